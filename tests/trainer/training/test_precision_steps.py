"""XLA on one device, end to end through `train_lib.run`, in the default suite (issue 21).

Kept small (the tiny backbone at 32 px, batch 4, 2 steps). The end-to-end mixed_float16
run under MirroredStrategy (the keras #18666 pitfall) is
test_train.py::test_resume_is_exact_with_several_steps_per_execution, which trains the GPU
defaults together; the policy selection itself is tested in test_model.py.
"""

import numpy as np

from tests.trainer import tiny_data
from trainer.training import config as config_lib
from trainer.training import distribution, train_lib


def test_jit_compile_opt_in_trains_on_one_device(tmp_path):
    """XLA stays opt-in (keras #17187, tensorflow #56423); when asked for, it must still train.

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
