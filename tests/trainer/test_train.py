"""End to end through the command line: MirroredStrategy on 2 logical CPUs, kill, resume, export.

One run is killed with SIGKILL in the middle of an epoch, right after a
mid-epoch backup; the same command then resumes it. The finished run must have
taken exactly epochs x steps_per_epoch optimizer steps (nothing replayed,
nothing lost), logged each epoch once, and exported a SavedModel that scores
JPEG bytes like the Keras model does, in Python and through `saved_model_cli`.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import tiny_data
from trainer import callbacks, export, image_ops
from trainer import model as _registers_preprocessing_layer  # noqa: F401  (for load_model)

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS, STEPS = 2, 2


def _command(data_dir, model_dir):
    return [
        sys.executable,
        "-m",
        "trainer.task",
        f"--data_dir={data_dir}",
        f"--model_dir={model_dir}",
        "--cpu_replicas=2",
        "--weights=none",
        "--image_size=32",
        "--global_batch_size=4",
        f"--epochs={EPOCHS}",
        f"--steps_per_epoch={STEPS}",
        "--backup_every_steps=1",
        "--shuffle_buffer=16",
        "--verbose=0",
    ]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs, kills mid-epoch, resumes; returns (model_dir, state at the kill, resumed stdout)."""
    root = tmp_path_factory.mktemp("resume")
    data_dir = tiny_data.write(str(root / "tfds"), train=16, validation=8, test=4, size=40)
    model_dir = root / "model"
    state_file = model_dir / "backup" / callbacks.STATE_FILENAME
    first = subprocess.Popen(
        _command(data_dir, model_dir),
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["step"] >= 1:
            break
        time.sleep(0.05)
    assert first.poll() is None, (
        f"The first run ended before it could be killed:\n{first.stderr.read()[-3000:]}"
    )
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    killed_at = json.loads(state_file.read_text())

    second = subprocess.run(
        _command(data_dir, model_dir),
        env=_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert second.returncode == 0, second.stderr[-5000:]
    return model_dir, killed_at, second.stdout, data_dir


def test_killed_run_resumes_mid_epoch_with_exact_step_count(trained):
    model_dir, killed_at, stdout, _ = trained
    assert killed_at["epoch"] == 0 and killed_at["step"] >= 1  # Killed inside the first epoch.
    assert f"phase 0 epoch 0 step {killed_at['step']}" in stdout
    final = json.loads((model_dir / "backup" / callbacks.STATE_FILENAME).read_text())
    assert (final["epoch"], final["step"]) == (EPOCHS, 0)
    with h5py.File(model_dir / "backup" / callbacks.WEIGHTS_FILENAME) as weights:
        iterations = weights["optimizer/vars/0"][()]
    assert iterations == EPOCHS * STEPS
    history = callbacks.read_history(str(model_dir / "history.csv"))
    assert [int(row["epoch"]) for row in history] == list(range(1, EPOCHS + 1))
    assert all(np.isfinite(float(row["loss"])) for row in history)
    assert "val_auc" in history[0] and "precision" in history[0] and "recall" in history[0]
    assert re.search(r"best epoch\s+\d by val_auc", stdout)
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["epochs"] == EPOCHS and saved["cpu_replicas"] == 2


def test_export_scores_jpeg_bytes_like_the_keras_model(trained, tmp_path):
    model_dir, _, _, _ = trained
    metadata = export.read_metadata(str(model_dir / "export"))
    assert metadata.threshold_source == "validation EER" and 0.0 <= metadata.threshold <= 1.0
    assert metadata.image_size == 32 and metadata.backbone == "resnet50"

    jpegs = [
        tiny_data.jpeg_bytes(label, 500 + label, size=size)
        for label, size in ((0, 40), (1, 40), (1, 57), (0, 33))
    ]
    served = export.load_scorer(str(model_dir / "export"))(tf.constant(jpegs))[
        export.OUTPUT_NAME
    ].numpy()
    model = keras.models.load_model(model_dir / "model.keras", safe_mode=True, compile=False)
    pixels = tf.stack([image_ops.decode_for_eval(tf.constant(j), 32) for j in jpegs])
    expected = tf.sigmoid(model(pixels, training=False))[:, 0].numpy()
    assert served.shape == (4,) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5)

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
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout.split(export.OUTPUT_NAME, 1)[1]
    values = [float(v) for v in re.findall(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?", printed)][:4]
    np.testing.assert_allclose(values, served, atol=1e-4)


def test_best_checkpoint_is_what_was_exported(trained):
    model_dir, _, _, _ = trained
    best = callbacks.read_best(str(model_dir / "checkpoints"))
    assert best["monitor"] == "val_auc" and 0 <= best["epoch"] < EPOCHS
    checkpoint = keras.models.load_model(
        model_dir / "checkpoints" / "best.keras", safe_mode=True, compile=False
    )
    final = keras.models.load_model(model_dir / "model.keras", safe_mode=True, compile=False)
    for a, b in zip(checkpoint.get_weights(), final.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (model_dir / "logs" / "train").is_dir()
