"""trainer.task, training.config, training.distribution: flags, checks and strategies.

Every bad value must fail before the model is built, with a message naming the
value and the fix.
"""

import dataclasses
import glob
import json
import os
import pathlib
import subprocess
import sys

from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import tiny_data
from trainer import model as model_lib
from trainer import task
from trainer.training import config as config_lib
from trainer.training import distribution, precision, train_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
task.define_flags()  # dfd-train's flags, parsed below as the command parses them.


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data.write(str(tmp_path_factory.mktemp("tfds")), train=8, validation=4, test=2)


@pytest.mark.parametrize("flagfile", sorted(glob.glob(str(REPO / "deploy/configs/*.cfg"))))
def test_flagfiles_load_and_validate(flagfile):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["dfd-train", f"--flagfile={flagfile}", "--data_dir=/d", "--model_dir=/m"])
    config = task.config_from_flags()
    config_lib.validate(config)
    flags.FLAGS.unparse_flags()


def test_the_8gpu_flagfile_trains_end_to_end_on_2_cpu_replicas(tmp_path):
    """deploy/configs/140k_resnet50_8gpu.cfg with only sizes overridden, on conftest's 2 CPUs.

    Sizes: the tiny backbone (ResNet50's stage names, so `--fine_tune_from=conv4` holds)
    with saved weights standing for ImageNet's, 32 px, batch 4, 2 epochs of 2 steps (one
    head, one fine-tune). `--precision` and `--steps_per_execution` are set to what `auto`
    resolves to on GPUs (mixed_float16, 8, lowered to a divisor of the epoch), since on
    CPUs `auto` picks float32 and 1. Everything else (MirroredStrategy, AdamW, warm-up,
    label smoothing, dropout, the augmentation, backups every 600 s) is the flagfile's.
    """
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=2, size=40)
    weights = str(tmp_path / "tiny.weights.h5")
    model_lib.tiny_backbone(input_shape=(32, 32, 3)).save_weights(weights)
    flags.FLAGS.unparse_flags()
    flags.FLAGS(
        [
            "dfd-train",
            f"--flagfile={REPO / 'deploy/configs/140k_resnet50_8gpu.cfg'}",
            f"--data_dir={data_dir}",
            f"--model_dir={tmp_path / 'model'}",
            "--backbone=tiny",
            f"--weights={weights}",
            "--image_size=32",
            "--global_batch_size=4",
            "--epochs=2",
            "--head_epochs=1",
            "--steps_per_epoch=2",
            "--shuffle_buffer=16",
            f"--precision={precision.resolve('auto', 'GPU')}",
            f"--steps_per_execution={distribution.STEPS_PER_EXECUTION_BY_DEVICE['GPU']}",
            "--verbose=0",
        ]
    )
    config = task.config_from_flags()
    flags.FLAGS.unparse_flags()
    assert (config.strategy, config.optimizer, config.fine_tune_from) == (
        "mirrored",
        "adamw",
        "conv4",
    )
    try:
        result = train_lib.run(config, strategy=distribution.get_strategy(config.strategy))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history = result["history"]
    assert [(int(r["epoch"]), r["phase"]) for r in history] == [(1, "head"), (2, "fine_tune")]
    assert all(np.isfinite(float(r["loss"])) for r in history)
    assert (tmp_path / "model" / "export" / "saved_model.pb").exists()


def test_config_from_flags_covers_every_field():
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["dfd-train", "--data_dir=/d", "--model_dir=/m", "--epochs=3", "--weights=none"])
    config = task.config_from_flags()
    assert (config.data_dir, config.epochs, config.weights) == ("/d", 3, "none")
    assert json.loads(config.to_json())["global_batch_size"] == 64
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"strategy": "gpu"}, "--strategy='gpu' is not one of"),
        ({"global_batch_size": 0}, "--global_batch_size=0 must be > 0"),
        ({"dropout": 1.5}, "--dropout=1.5 must be in"),
        ({"head_epochs": 5, "epochs": 5}, "--head_epochs=5 leaves no fine-tuning epoch"),
        ({"jpeg_quality_min": 101}, "--jpeg_quality_min=101"),
        ({"image_size": 100000}, "--image_size=100000 must be in [16, 1024]"),
        ({"data_dir": ""}, "--data_dir is required"),
    ],
)
def test_validate_names_the_bad_value(change, message):
    config = dataclasses.replace(config_lib.TrainConfig(data_dir="/d", model_dir="/m"), **change)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        config_lib.validate(config)


def test_no_dataset_at_data_dir(tmp_path):
    config = config_lib.TrainConfig(
        data_dir=str(tmp_path / "empty"), model_dir=str(tmp_path / "m"), weights="none"
    )
    with pytest.raises(
        FileNotFoundError,
        match=r"No TFDS dataset 'real_and_fake_faces' under "
        r"--data_dir=.*dfd-build-dataset",
    ):
        train_lib.run(config)


def test_unwritable_model_dir(data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    config = config_lib.TrainConfig(
        data_dir=data_dir, model_dir=str(blocker / "model"), weights="none"
    )
    with pytest.raises(PermissionError, match=r"Cannot write to .*a_file/model"):
        train_lib.run(config)


def test_global_batch_not_divisible_by_replicas(data_dir, tmp_path):
    strategy = distribution.get_strategy("mirrored")  # conftest: 2 logical CPUs.
    assert strategy.num_replicas_in_sync == 2
    config = config_lib.TrainConfig(
        data_dir=data_dir, model_dir=str(tmp_path / "m"), weights="none", global_batch_size=5
    )
    with pytest.raises(
        ValueError,
        match=r"--global_batch_size=5 is not divisible by the 2 "
        r"replicas.*e\.g\. 4",
    ):
        train_lib.run(config, strategy=strategy)


def test_command_line_reports_bad_flags_in_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.task",
            f"--data_dir={tmp_path}/none",
            f"--model_dir={tmp_path}/m",
            "--weights=none",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("dfd-train: error: No TFDS dataset")
    assert "dfd-build-dataset" in last_line
    # A bad enum value fails in absl's parser, before anything else (no second process).
    flags.FLAGS.unparse_flags()
    with pytest.raises(flags.IllegalFlagValueError, match="strategy.*mirrored"):
        flags.FLAGS(["dfd-train", "--data_dir=/d", "--model_dir=/m", "--strategy=gpu"])
    flags.FLAGS.unparse_flags()


def test_get_strategy_branches():
    assert distribution.resolve_name("auto") == "mirrored"  # conftest: 2 logical CPUs.
    mirrored = distribution.get_strategy("auto")
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 2 and distribution.is_chief(mirrored)
    one = distribution.get_strategy("one_device")
    assert one.num_replicas_in_sync == 1 and distribution.device_kind(one) == "CPU"
    with pytest.raises(ValueError, match="'horovod' is not one of"):
        distribution.get_strategy("horovod")
    # No TPU here (nor a metadata server to ask for one): one line naming it, no traceback.
    with pytest.raises(ValueError, match=r"--strategy=tpu: cannot reach --tpu=no-such-tpu: .*Fix"):
        distribution.get_strategy("tpu", tpu="no-such-tpu")
    # The split is already 2: asking for 2 again is fine, another count is a clear error.
    distribution.split_cpu(2)
    with pytest.raises(RuntimeError, match="--cpu_replicas=4"):
        distribution.split_cpu(4)


def test_tf_config_worker_count(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {
                "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
                "task": {"type": "worker", "index": 0},
            }
        ),
    )
    assert distribution.tf_config_workers() == 2
    assert distribution.resolve_name("auto") == "multi_worker_mirrored"
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        distribution.tf_config_workers()
