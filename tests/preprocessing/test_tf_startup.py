"""TensorFlow's start-up notes stay off the console; its warnings and errors do not."""

import os
import pathlib
import subprocess
import sys

from preprocessing import tf_startup

REPO = pathlib.Path(__file__).resolve().parents[2]

CAPTURED = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795742423.672861   12699 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1795742423.726069   12699 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow.\n"
    "W0000 00:00:1795742423.8 12699 gpu_device.cc:2344] Cannot dlopen some GPU libraries.\n"
    "E0000 00:00:1795742423.9 12699 cuda_dnn.cc:8310] Unable to register cuDNN factory.\n"
)


def test_info_notes_are_kept_apart_and_warnings_and_errors_pass():
    notes, others = tf_startup.split_notes(CAPTURED)
    assert "oneDNN" in notes and "To enable the following instructions" in notes
    assert "absl::InitializeLog" in notes
    assert others.splitlines() == CAPTURED.splitlines()[-2:]


def test_verbosity_is_read_before_absl_parses_it():
    assert tf_startup.verbosity_in_argv(["dfd-train", "--verbosity=1"]) == 1
    assert tf_startup.verbosity_in_argv(["dfd-train", "-v", "2"]) == 2
    assert tf_startup.verbosity_in_argv(["dfd-train", "--model_dir=x"]) == 0


def test_a_tool_that_imports_quiet_tensorflow_first_prints_no_start_up_notes():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import trainer.evaluate, tensorflow as tf; print(tf.constant(2) + 1)",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "oneDNN" not in done.stderr and "InitializeLog" not in done.stderr, done.stderr
    assert "tf.Tensor(3" in done.stdout
