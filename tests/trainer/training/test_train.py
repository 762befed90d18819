"""The production recipe end to end through the command line, on the tiny backbone.

MirroredStrategy on 2 logical CPUs runs what every 140k flagfile runs: a
pretrained backbone (here a small local weights file saved from a
`--weights=none` tiny backbone), the head phase, then fine-tuning from
`conv4`. The first run kills itself with
SIGKILL in the middle of the head phase's first epoch, right after a backup;
the same command then resumes it across the phase boundary. The finished run
must have taken exactly the planned optimizer steps (nothing replayed, nothing
lost), logged each epoch once, kept the frozen stages bit-identical to the
weights file, and exported a SavedModel that scores JPEG bytes like the Keras
model does, in Python and through `saved_model_cli`.

The tiny backbone keeps this about 10x faster than the same flow on ResNet50;
ResNet50 itself is covered by tests/trainer/test_model.py and the demo.
Wall-clock limits below are generous (a run takes ~30 s on a quiet 2-core
machine, up to 3-4x that at a load of 6): a limit only catches a hang.
"""

import dataclasses
import datetime
import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import tiny_data
from trainer import data, export, metrics
from trainer import model as model_lib
from trainer.training import callbacks, distribution, divergence, input_pipeline, train_lib
from trainer.training import config as config_lib
from trainer.training.keras_workarounds import multiworker

REPO = pathlib.Path(__file__).resolve().parents[3]
EPOCHS, HEAD_EPOCHS, STEPS, KILL_AFTER = 3, 1, 4, 2
# Per run; measured ~30 s on a quiet 2-core machine (TensorFlow start-up included).
RUN_TIMEOUT_S = 600


def _flags(data_dir, model_dir, weights):
    return [
        f"--data_dir={data_dir}",
        f"--model_dir={model_dir}",
        "--cpu_replicas=2",
        "--backbone=tiny",
        f"--weights={weights}",
        "--image_size=32",
        "--global_batch_size=4",
        f"--epochs={EPOCHS}",
        f"--head_epochs={HEAD_EPOCHS}",
        "--fine_tune_from=conv4",
        f"--steps_per_epoch={STEPS}",
        "--backup_every_steps=2",
        "--shuffle_buffer=16",
        "--verbose=1",
        "--log_every_steps=2",
    ]


def _env():
    # Without conftest's TF_CPP_MIN_LOG_LEVEL: the command decides what the console shows.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs, dies mid-epoch in the head phase, resumes; returns what the tests look at."""
    root = tmp_path_factory.mktemp("recipe")
    # 3 validation examples on 2 replicas of 2: replica 1 gets 1 example and 1 padding slot.
    data_dir = tiny_data.write(str(root / "tfds"), train=16, validation=3, test=4, size=40)
    weights = str(root / "tiny_backbone.weights.h5")
    model_lib.tiny_backbone(input_shape=(32, 32, 3)).save_weights(weights)
    model_dir = root / "model"
    args = _flags(data_dir, model_dir, weights)
    first = subprocess.run(
        [sys.executable, "-m", "tests.trainer.run_until_killed", f"--kill_after_step={KILL_AFTER}"]
        + args,
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert first.returncode == -9, first.stderr[-3000:]  # SIGKILL, as a preempted VM.
    killed_at = json.loads((model_dir / "backup" / callbacks.STATE_FILENAME).read_text())
    second = subprocess.run(
        [sys.executable, "-m", "trainer.task"] + args,
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert second.returncode == 0, second.stderr[-5000:]
    return {
        "model_dir": model_dir,
        "killed_at": killed_at,
        "stdout": second.stdout,
        "stderr": second.stderr,
        "weights": weights,
        "data_dir": data_dir,
        "args": args,
    }


def test_killed_run_resumes_across_the_phase_boundary_with_exact_step_count(trained):
    model_dir, killed_at, stdout = trained["model_dir"], trained["killed_at"], trained["stdout"]
    # Killed inside the head phase's first epoch, right after the backup of step 2.
    assert (killed_at["phase"], killed_at["epoch"], killed_at["step"]) == (0, 0, KILL_AFTER)
    assert f"resuming at phase 0 (head) epoch 0 step {KILL_AFTER}" in stdout
    final = json.loads((model_dir / "backup" / callbacks.STATE_FILENAME).read_text())
    assert (final["phase"], final["epoch"], final["step"]) == (1, EPOCHS, 0)
    with h5py.File(model_dir / "backup" / callbacks.WEIGHTS_FILENAME) as weights:
        iterations = weights["optimizer/vars/0"][()]
    assert iterations == (EPOCHS - HEAD_EPOCHS) * STEPS  # The fine-tune optimizer's steps.
    history = callbacks.read_history(str(model_dir / "history.csv"))
    assert [(int(r["epoch"]), r["phase"]) for r in history] == [
        (1, "head"),
        (2, "fine_tune"),
        (3, "fine_tune"),
    ]
    assert all(np.isfinite(float(row["loss"])) for row in history)
    # Validation saw each of its 3 examples once per epoch (2 replicas, per-replica batch 2).
    assert [float(r["val_examples"]) for r in history] == [3.0] * EPOCHS
    assert all(float(r["images_per_second"]) > 0 for r in history)
    assert re.search(r"best epoch\s+\d by val_auc", stdout)
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["epochs"] == EPOCHS and saved["cpu_replicas"] == 2


def test_frozen_stages_keep_the_weights_file_and_fine_tuned_stages_move(trained):
    start = model_lib.tiny_backbone(input_shape=(32, 32, 3), weights=trained["weights"])
    # The last weights trained (the backup), not the best epoch's (maybe the head phase's).
    latest = model_lib.build_model("tiny", image_size=32, weights="none")
    latest.load_weights(trained["model_dir"] / "backup" / callbacks.WEIGHTS_FILENAME)
    final = latest.get_layer(model_lib.TINY_BACKBONE)
    for stage in range(1, 6):
        conv = f"conv{stage}_conv"
        same = np.array_equal(start.get_layer(conv).kernel, final.get_layer(conv).kernel)
        assert same == (stage < 4), conv  # --fine_tune_from=conv4: conv1-3 stay frozen.
        # BatchNorm stays frozen in both phases of the pretrained recipe.
        for a, b in zip(
            start.get_layer(f"conv{stage}_bn").get_weights(),
            final.get_layer(f"conv{stage}_bn").get_weights(),
        ):
            np.testing.assert_array_equal(a, b)


def test_console_shows_plain_progress_and_no_library_noise(trained):
    stdout, stderr = trained["stdout"], trained["stderr"]
    assert "\x1b" not in stdout  # Not a terminal: no ANSI codes, no progress bar.
    assert re.search(r"epoch 2/3 step 2/4 loss \d+\.\d+ [\d,]+ img/s ETA \d+m\d\ds", stdout)
    assert re.search(r"epoch 3/3 done: .*val_auc", stdout)
    assert re.search(r"images/s\s+[\d,.]+ \(training steps, measured\)", stdout)
    assert re.search(r"exact val AUC\s+[01]\.\d{4} \(exported weights", stdout)
    noise = (
        "FeatureConnector.dtype is deprecated",
        "`shuffle=True` was passed",
        "Local rendezvous is aborting",
        '"global_batch_size": 4',  # The configuration JSON: in config.json, not the console.
    )
    for line in noise:
        assert line not in stderr and line not in stdout
    assert (trained["model_dir"] / "train.log").stat().st_size > 0


def test_export_scores_jpeg_bytes_like_the_keras_model(trained, tmp_path):
    model_dir = trained["model_dir"]
    metadata = export.read_metadata(str(model_dir / "export"))
    assert metadata.threshold_source == "validation EER" and 0.0 <= metadata.threshold <= 1.0
    assert metadata.image_size == 32 and metadata.backbone == "tiny"
    # The model card: the dataset, when, and the exported weights' validation figures.
    assert metadata.dataset == json.loads((model_dir / "config.json").read_text())["dataset"]
    assert datetime.datetime.fromisoformat(metadata.exported_at).tzinfo is not None
    assert metadata.validation_auc is None or 0.0 <= metadata.validation_auc <= 1.0
    assert metadata.validation_eer is None or 0.0 <= metadata.validation_eer <= 1.0

    jpegs = [
        tiny_data.jpeg_bytes(label, 500 + label, size=size)
        for label, size in ((0, 40), (1, 40), (1, 57), (0, 33))
    ]
    served = export.load_scorer(str(model_dir / "export"))(tf.constant(jpegs))[
        export.OUTPUT_NAME
    ].numpy()
    model = keras.models.load_model(model_dir / "model.keras", safe_mode=True, compile=False)
    pixels = tf.stack([export.decode_for_eval(tf.constant(j), 32) for j in jpegs])
    expected = tf.sigmoid(model(pixels, training=False))[:, 0].numpy()
    assert served.shape == (4,) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5)
    # One copy of the weights (issue 13 item 8: it used to hold two).
    saved = sum(f.stat().st_size for f in (model_dir / "export" / "variables").glob("*.data-*"))
    weights = sum(w.nbytes for w in model.get_weights())
    assert saved < 1.25 * weights, (saved, weights)

    # TF Serving's loader path: the session-based `saved_model_cli run`.
    inputs = tmp_path / "images.npy"
    np.save(inputs, np.array(jpegs, dtype="S"))
    cli = pathlib.Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [
            str(cli),
            "run",
            "--dir",
            str(model_dir / "export"),
            "--tag_set",
            "serve",
            "--signature_def",
            export.SIGNATURE_NAME,
            "--inputs",
            f"{export.INPUT_NAME}={inputs}",
        ],
        capture_output=True,
        text=True,
        env={**_env(), "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.split(export.OUTPUT_NAME, 1)[1]
    values = [float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?", printed)][:4]
    np.testing.assert_allclose(values, served, atol=1e-4)


def test_best_checkpoint_is_what_was_exported(trained):
    model_dir = trained["model_dir"]
    best = callbacks.read_best(str(model_dir / "checkpoints"))
    assert best["monitor"] == "val_auc" and 0 <= best["epoch"] < EPOCHS
    checkpoint = keras.models.load_model(
        model_dir / "checkpoints" / "best.keras", safe_mode=True, compile=False
    )
    final = keras.models.load_model(model_dir / "model.keras", safe_mode=True, compile=False)
    for a, b in zip(checkpoint.get_weights(), final.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (model_dir / "logs" / "train").is_dir()


# ---------------------------------------------------------------------------- in-process runs
# MirroredStrategy over conftest's 2 logical CPUs, tiny backbone, one or a few steps.


def _config(data_dir, model_dir, **overrides):
    values = dict(
        data_dir=data_dir,
        model_dir=str(model_dir),
        backbone="tiny",
        weights="none",
        image_size=32,
        global_batch_size=8,
        epochs=1,
        steps_per_epoch=1,
        shuffle_buffer=16,
        verbose=0,
    )
    values.update(overrides)
    return config_lib.TrainConfig(**values)


@pytest.fixture(scope="module")
def mirrored():
    return distribution.get_strategy("mirrored")


@pytest.fixture(scope="module")
def one_device():
    """For runs whose point is not the replicas: tracing one replica is about 2x cheaper."""
    return distribution.get_strategy("one_device")


@pytest.mark.filterwarnings("ignore:Your input ran out of data")
def test_validation_smaller_than_the_global_batch_counts_every_example_once(
    mirrored, tmp_path, caplog
):
    """Issue 14: 2 replicas, global batch 8, validation splits of 1, 3 and 4 examples.

    Each split fits in replica 0's share of one global batch, so replica 1 gets only
    padding: the case that crashed with `AddN ... [4,32,32,3] != [0,32,32,3]`. The
    model is compiled as training compiles it and evaluated through the padded
    pipeline `fit` validates on; the command-line recipe test above trains to the
    end with a 3-example split on 2 replicas (`val_examples` = 3 each epoch).
    """
    data_dir = tiny_data.write(
        str(tmp_path / "tfds"),
        train=8,
        validation=1,
        test=3,
        size=40,
        num_shards=1,
        extra_splits={"four": 4},
    )
    config = _config(data_dir, tmp_path / "model")
    with mirrored.scope():
        model = model_lib.build_model("tiny", image_size=32, weights="none")
        train_lib.compile_model(model, config, train_lib.plan_phases(config)[0], 1)
    builder = data.load_builder(data_dir)
    for split, size in (("validation", 1), ("test", 3), ("four", 4)):
        steps = input_pipeline.eval_steps(builder, split, config)
        dataset = mirrored.distribute_datasets_from_function(
            lambda context, split=split, steps=steps: input_pipeline.build_dataset(
                split, config, context, training=False, builder=builder, eval_steps=steps
            )
        )
        logs = model.evaluate(dataset, verbose=0, return_dict=True)
        assert logs["examples"] == size, split
    # One example, one class: no equal-error point, said in one line.
    with caplog.at_level(logging.WARNING):
        assert train_lib.eer_threshold(np.array([0.0]), np.array([0.3]), "validation")[:2] == (
            0.5,
            "default",
        )
    lines = [r.getMessage() for r in caplog.records if "too small for an EER" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "1 real and 0 fake" in lines[0]


def test_rerun_of_a_finished_run_only_reexports_and_keeps_the_evaluators_threshold(
    one_device, tmp_path
):
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=2, size=40)
    config = _config(data_dir, tmp_path / "model")
    first = train_lib.run(config, strategy=one_device)
    assert first["status"] == "fresh start" and first["steps_trained"] == 1
    # dfd-evaluate --write_threshold recorded its own choice.
    chosen = dataclasses.replace(
        export.read_metadata(first["export_dir"]), threshold=0.4242, threshold_source="max_f1"
    )
    export.write_metadata(first["export_dir"], chosen)

    again = train_lib.run(config, strategy=one_device)
    assert again["status"].startswith("finished earlier: nothing left to train, only re-exporting")
    assert again["steps_trained"] == 0
    kept = export.read_metadata(again["export_dir"])
    assert (kept.threshold, kept.threshold_source) == (0.4242, "max_f1")

    # One more epoch that cannot beat the best checkpoint (no weight moves): the
    # exported weights are the same, so the evaluator's threshold stays.
    further = dataclasses.replace(config, epochs=config.epochs + 1, learning_rate=1e-12)
    continued = train_lib.run(further, strategy=one_device)
    assert continued["steps_trained"] == 1 and continued["best_epoch"] == first["best_epoch"]
    kept = export.read_metadata(continued["export_dir"])
    assert (kept.threshold, kept.threshold_source) == (0.4242, "max_f1")


def test_status_says_how_a_run_relates_to_its_model_dir():
    config = config_lib.TrainConfig(data_dir="/d", model_dir="/m", weights="none", epochs=2)
    phases = train_lib.plan_phases(config)
    saved = dataclasses.asdict(dataclasses.replace(config, epochs=1, verbose=2))
    changes = config_lib.changed_settings(saved, config)
    assert changes == ["epochs 1 -> 2"]  # verbose is not a training setting.
    state = callbacks.TrainingState(phase=0, epoch=1, step=0)
    assert train_lib._status(config, phases, state, saved, changes) == (
        "continuing at phase 0 (full) epoch 1 step 0 with changed settings: epochs 1 -> 2",
        False,
    )
    state = callbacks.TrainingState(phase=0, epoch=2, step=0)
    assert train_lib._status(config, phases, state, saved, [])[1] is True
    assert train_lib._status(config, phases, None, None, []) == ("fresh start", False)


class _Crash(Exception):
    """Stands for a crash right after a backup (the command-line test uses a real SIGKILL)."""


class _CrashAfterStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 >= self.step:
            raise _Crash(f"after step {batch + 1}")


def test_resume_is_exact_with_several_steps_per_execution(mirrored, tmp_path):
    """Keras calls batch callbacks once per execution: backups must still land on exact steps.

    The GPU defaults on 2 CPU replicas: MirroredStrategy, where the steps of a call run in
    keras_workarounds.multi_step's loop (Keras 3.15's own fails there, keras #19246), and
    mixed_float16 with the replica-safe loss scaling (its state is in the backup). 3 steps
    per execution, backups every 2 steps: a backup happens whenever a call crosses a
    multiple of 2, and epochs of 6 steps end on call boundaries. The backup at step 3 is
    in the middle of a multiple of 2; the resumed run trains the rest, 3 steps, as one call.
    (This is also the suite's end-to-end mixed_float16 run through `train_lib.run`: the
    saved model keeps the float32 logit, keras #18666.)
    """
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=16, validation=4, test=2, size=40)
    config = _config(
        data_dir,
        tmp_path / "model",
        global_batch_size=4,
        epochs=1,
        steps_per_epoch=6,
        steps_per_execution=3,
        backup_every_steps=2,
        precision="mixed_float16",
    )
    try:
        with pytest.raises(_Crash):
            train_lib.run(config, strategy=mirrored, extra_callbacks=[_CrashAfterStep(3)])
        killed_at = callbacks.read_state(str(tmp_path / "model" / "backup"))
        assert (killed_at.epoch, killed_at.step) == (0, 3)  # The call of steps 1-3 crossed 2.
        result = train_lib.run(config, strategy=mirrored)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert result["status"] == "resuming at phase 0 (full) epoch 0 step 3"
    assert result["steps_trained"] == 6 - 3
    with h5py.File(tmp_path / "model" / "backup" / callbacks.WEIGHTS_FILENAME) as weights:
        # The loss-scale optimizer's state is in the backup; its inner optimizer counts steps.
        assert weights["optimizer/inner_optimizer/vars/0"][()] == 6
    assert [int(r["epoch"]) for r in result["history"]] == [1]
    assert np.isfinite(float(result["history"][0]["loss"]))
    saved = keras.models.load_model(result["keras_model"], safe_mode=True, compile=False)
    assert saved.get_layer("logit").dtype_policy.name == "float32"
    assert saved.get_layer("tiny").get_layer("conv1_conv").dtype_policy.name == "mixed_float16"


def _failing_at_batch(build_dataset, batch):
    """`input_pipeline.build_dataset` whose training pipelines fail at per-replica batch `batch`.

    The error is raised by `tf.data` inside the training call that fetches that batch,
    after the earlier steps of the same call have run: a failure in the middle of an
    execution, which a Keras callback (`_CrashAfterStep`) cannot produce.
    """

    def build(split, config, input_context=None, *, training, **kwargs):
        dataset = build_dataset(split, config, input_context, training=training, **kwargs)
        if not training:
            return dataset

        def check(index, element):
            with tf.control_dependencies(
                [tf.debugging.assert_less(index, tf.constant(batch, tf.int64), "input failed")]
            ):
                return tf.nest.map_structure(tf.identity, element)

        return dataset.enumerate().map(check)

    return build


def _h5_arrays(path):
    """{path inside the file: array} of every dataset of a `.weights.h5` file."""
    arrays = {}

    def keep(name, item):
        if isinstance(item, h5py.Dataset):
            arrays[name] = item[()]

    with h5py.File(path) as file:
        file.visititems(keep)
    return arrays


def test_resume_is_exact_after_a_failure_in_the_middle_of_an_execution(
    mirrored, tmp_path, monkeypatch
):
    """Issue 21: a run that fails inside a call of several steps resumes from the call before.

    The GPU defaults on 2 CPU replicas (MirroredStrategy, mixed_float16, 3 steps per
    execution, the in-step flip the config turns on by default), a backup at every call
    end. The training input raises at the 5th global batch, i.e. inside the second
    call (steps 4-6) after its step 4 has updated the weights: Keras gets no
    `on_train_batch_end` for that call, so the last backup is the end of step 3, and
    the step-4 update done in memory is lost with the process. The rerun restores
    step 3 (weights, optimizer and loss-scale state), skips the 3 steps' examples and
    trains steps 4-6 again, and must end bit-identical to an uninterrupted run of the
    same config: the in-step augmentation is keyed by the restored optimizer step and
    the crops by the example's position. Two settings differ from the defaults, for
    the bitwise comparison only: `deterministic=True` keeps the parallel decode map in
    order (without it even two uninterrupted runs may batch examples differently), and
    `dropout=0.0`, because the Dropout layer's random state (a Keras SeedGenerator
    variable) is not among `model.weights`, so the backup does not hold it: a resumed
    run draws other dropout masks than the uninterrupted one (measured: with the
    default 0.2, every trained array differs after steps 4-6; with 0.0, none does).
    """
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=16, validation=4, test=2, size=40)
    settings = dict(
        global_batch_size=4,
        epochs=1,
        steps_per_epoch=6,
        steps_per_execution=3,
        backup_every_steps=3,
        precision="mixed_float16",
        deterministic=True,
        dropout=0.0,  # Dropout's random state is not in the backup (see above).
    )
    config = _config(data_dir, tmp_path / "model", **settings)
    assert config.flip  # The default in-step augmentation is on.
    replicas = mirrored.num_replicas_in_sync
    setups = []
    try:
        whole = train_lib.run(_config(data_dir, tmp_path / "whole", **settings), strategy=mirrored)
        with monkeypatch.context() as patch:
            # 1 input pipeline feeding 2 replicas: global batch 5 is per-replica batch 8.
            patch.setattr(
                input_pipeline,
                "build_dataset",
                _failing_at_batch(input_pipeline.build_dataset, 4 * replicas),
            )
            with pytest.raises(tf.errors.InvalidArgumentError, match="input failed"):
                train_lib.run(config, strategy=mirrored, on_setup=setups.append)
        # The failure was mid-call: step 4 had run in memory, no backup after step 3.
        assert int(setups[0].fit_model.optimizer.iterations.value.numpy()) == 4
        failed_at = callbacks.read_state(str(tmp_path / "model" / "backup"))
        assert (failed_at.epoch, failed_at.step) == (0, 3)
        result = train_lib.run(config, strategy=mirrored)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert whole["status"] == "fresh start" and whole["steps_trained"] == 6
    assert result["status"] == "resuming at phase 0 (full) epoch 0 step 3"
    assert result["steps_trained"] == 6 - 3
    resumed = _h5_arrays(tmp_path / "model" / "backup" / callbacks.WEIGHTS_FILENAME)
    expected = _h5_arrays(tmp_path / "whole" / "backup" / callbacks.WEIGHTS_FILENAME)
    assert resumed["optimizer/inner_optimizer/vars/0"] == 6
    # Every array of the backup: model weights, optimizer slots, loss scale and its counter.
    assert sorted(resumed) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)


def test_pretrained_recipe_at_chance_stops_early_and_exports_nothing(one_device, tmp_path):
    """Early stopping in the fine-tune phase, then the at-chance rule (issue 12 item 5).

    A learning rate too small to move any score keeps val_auc at 0.5: patience 1
    stops the fine-tune phase after one epoch without improvement, and with 25
    real and 25 fake validation examples 0.5 is "at chance" (`trainer.training.divergence`):
    the run fails and writes neither export/ nor model.keras.
    """
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=50, test=2, size=40)
    weights = str(tmp_path / "tiny.weights.h5")
    model_lib.tiny_backbone(input_shape=(32, 32, 3)).save_weights(weights)
    config = _config(
        data_dir,
        tmp_path / "model",
        weights=weights,
        epochs=5,
        head_epochs=1,
        learning_rate=1e-9,
        fine_tune_learning_rate=1e-9,
        early_stopping_patience=1,
    )
    with pytest.raises(train_lib.TrainingDiverged) as error:
        train_lib.run(config, strategy=one_device)
    assert re.search(r"at chance \(it must exceed 0\.\d+ on 25 real and 25 fake", str(error.value))
    history = callbacks.read_history(str(tmp_path / "model" / "history.csv"))
    # Fine-tuning starts at epoch 2; epoch 3 does not improve on it: stop.
    assert [(int(r["epoch"]), r["phase"]) for r in history] == [
        (1, "head"),
        (2, "fine_tune"),
        (3, "fine_tune"),
    ]
    state = callbacks.read_state(str(tmp_path / "model" / "backup"))
    assert (state.phase, state.epoch) == (1, 5)  # The phase counts as done: no rerun trains it.
    assert not (tmp_path / "model" / "export").exists()
    assert not (tmp_path / "model" / "model.keras").exists()
    assert divergence.chance_margin(10_000, 10_000) == pytest.approx(0.0122, abs=1e-4)


def test_at_chance_rule_judges_the_exact_auc_not_the_binned_epoch_estimate():
    """Scores that rank every example right but share one of Keras' 200 AUC bins.

    Keras' `val_auc` reads them as chance (0.5); the rule must not call such a
    run diverged, so `finish` hands it the exact AUC of the exported weights.
    """
    labels = np.array([0] * 50 + [1] * 50)
    logits = np.linspace(-1e-3, 1e-3, 100)  # p_fake all within 0.49975..0.50025.
    binned = keras.metrics.AUC(from_logits=True)
    binned.update_state(labels, logits)
    assert float(binned.result()) == pytest.approx(0.5)
    exact = metrics.roc_auc(labels, logits)
    assert exact == 1.0
    divergence.check_not_diverged(exact, labels, "validation")  # Not at chance: no error.
    with pytest.raises(
        train_lib.TrainingDiverged, match=r"best checkpoint \(0\.5000\) is at chance"
    ):
        divergence.check_not_diverged(float(binned.result()), labels, "validation")
    with pytest.raises(train_lib.TrainingDiverged, match=r"\(nan\) is at chance"):
        divergence.check_not_diverged(float("nan"), labels, "validation")


def test_a_corrupted_shard_is_named_with_the_fix(one_device, tmp_path):
    """Issue 12 item 8: tf.data's DataLossError names no file; the trainer finds and names it."""
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=2, size=40)
    shard = sorted((tmp_path / "tfds").rglob("*-train.tfrecord-00000-of-*"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\0" * 64  # Flip bytes inside a record.
    shard.write_bytes(bytes(raw))
    with pytest.raises(data.CorruptedDataError) as error:
        train_lib.run(_config(data_dir, tmp_path / "model"), strategy=one_device)
    message = str(error.value)
    assert str(shard) in message and "dfd-build-dataset" in message and "\n" not in message


def test_imagenet_weights_offline_fail_in_one_line_before_heavy_work(tmp_path, monkeypatch):
    """Issue 13 item 3: no network (a proxy on a closed loopback port), empty Keras cache."""
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=2, test=2, size=40)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    config = _config(
        data_dir, tmp_path / "model", backbone="resnet50", weights="imagenet", epochs=3
    )
    with pytest.raises(FileNotFoundError) as error:
        train_lib.run(config)
    message = str(error.value)
    file_name = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert "--weights=none" in message and "--weights=/path/to/" + file_name in message
    assert str(tmp_path / "keras_home" / "models" / file_name) in message
    assert not (tmp_path / "model" / "config.json").exists()  # Nothing started.
    # A pre-filled cache is used as is, without any network.
    cached = tmp_path / "keras_home" / "models" / file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"placeholder")
    assert model_lib.ensure_imagenet_weights("resnet50") == str(cached)


def test_multiworker_workaround_private_api():
    """Fails loudly when Keras changes what `keras_workarounds.multiworker` overrides."""
    assert multiworker.private_api_signature() == (multiworker.OVERRIDDEN_PARAMETERS), (
        "Keras changed _maybe_symbolic_build: re-check "
        "trainer/training/keras_workarounds/multiworker.py"
    )
    multiworker.check_keras()  # The pinned Keras is one the work-around was checked on.
    # Keras' test for reducing the logs across workers exists, and is off outside multi-worker mode.
    assert not multiworker._keras_reduces_across_workers(tf.distribute.get_strategy())
    with pytest.raises(RuntimeError, match="checked on Keras 3.15, not 3.99.0"):
        multiworker.check_keras("3.99.0")
    spec = (
        tf.TensorSpec([4, 32, 32, 3], tf.uint8),
        tf.TensorSpec([None, 1], tf.float32),
    )
    images, labels = multiworker.example_batch(spec)
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (1, 1) and labels.dtype == np.float32
