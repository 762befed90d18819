"""A few mixed_float16 steps under MirroredStrategy on 2 logical CPUs (the keras #18666 pitfall).

Slow on CPU (float16 is emulated), so marked slow; the policy selection itself
is tested fast in test_model.py.
"""

import keras
import numpy as np
import pytest

from tests.trainer import tiny_data
from trainer.training import config as config_lib
from trainer.training import distribution, train_lib


@pytest.mark.slow
def test_mixed_float16_trains_under_mirrored_strategy(tmp_path):
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=2, size=40)
    config = config_lib.TrainConfig(
        data_dir=data_dir,
        model_dir=str(tmp_path / "model"),
        backbone="tiny",
        weights="none",
        image_size=32,
        global_batch_size=4,
        epochs=1,
        steps_per_epoch=2,
        shuffle_buffer=16,
        precision="mixed_float16",
        verbose=0,
    )
    strategy = distribution.get_strategy("mirrored")
    try:
        result = train_lib.run(config, strategy=strategy)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rows = result["history"]
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))
    saved = keras.models.load_model(result["keras_model"], safe_mode=True, compile=False)
    assert saved.get_layer("logit").dtype_policy.name == "float32"
    assert saved.get_layer("tiny").get_layer("conv1_conv").dtype_policy.name == "mixed_float16"


@pytest.mark.slow
def test_jit_compile_opt_in_trains_on_one_device(tmp_path):
    """XLA stays opt-in (keras #17187, tensorflow #56423); when asked for, it must still train_lib.

    On one device. Under MirroredStrategy over the 2 logical CPUs, XLA fails on this stack
    ("Trying to access resource .../replica_1 ... from device CPU:0"), which `run` warns about.
    """
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=2, size=40)
    config = config_lib.TrainConfig(
        data_dir=data_dir,
        model_dir=str(tmp_path / "model"),
        backbone="tiny",
        weights="none",
        image_size=32,
        global_batch_size=4,
        epochs=1,
        steps_per_epoch=2,
        shuffle_buffer=16,
        jit_compile=True,
        verbose=0,
    )
    result = train_lib.run(config, strategy=distribution.get_strategy("one_device"))
    assert len(result["history"]) == 1 and np.isfinite(float(result["history"][0]["loss"]))
