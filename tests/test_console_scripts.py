"""Every console script, as a user types it: `--help`, `~` in paths, one-line errors.

The scripts are the ones `setup.py` installs into the virtual environment's
`bin/` (what `make test` installs), run as subprocesses.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from preprocessing import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(sys.executable).parent

# script -> (a phrase of its description, flags it must list under --help)
SCRIPTS = {
    "dfd-synthetic": ("SYNTHETIC real-vs-fake", ["--output_dir", "--image_size", "--seed"]),
    "dfd-build-dataset": ("Builds the `real_and_fake_faces`", ["--manual_dir", "--data_dir"]),
    "dfd-build-video-dataset": ("Builds the `video_faces`", ["--manual_dir", "--frames_per_video"]),
    "dfd-train": ("Trains the real-vs-fake detector", ["--model_dir", "--global_batch_size"]),
    "dfd-evaluate": ("Evaluates an exported detector", ["--model_dir", "--threshold"]),
    "dfd-report": ("The evaluation report", ["--report_dir"]),
    "dfd-matrix": ("The cross-dataset matrix", ["--model", "--dataset", "--output_dir"]),
    "dfd-predict": ("Scores image files", ["--export_dir", "--explain"]),
    "dfd-batch-score": ("Scores many images with Beam", ["--export_dir", "--inputs"]),
    "dfd-serve": ("Serves an exported detector", ["--export_dir", "--port", "--max_upload_bytes"]),
    "dfd-storage": ("dfd-storage", ["--workers"]),
}
# Flags that absl or TensorFlow define; --help must not drown the tool's own in them.
FOREIGN_FLAGS = ["--logtostderr", "--verbosity", "--alsologtostderr", "--pdb_post_mortem"]


def _run(args, cwd=REPO, env=None, timeout=180):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_shows_the_tools_description_and_its_own_flags(script):
    phrase, own_flags = SCRIPTS[script]
    done = _run([str(BIN / script), "--help"])
    assert done.returncode == 0, done.stderr[-2000:]  # absl's own convention is 1.
    assert phrase in done.stdout, done.stdout[:500]
    flags_listed = set(re.findall(r"^\s+--(?:\[no\])?([a-z_]+)", done.stdout, re.M))
    for flag in own_flags:
        assert flag[2:] in flags_listed, (script, flag, sorted(flags_listed))
    for flag in FOREIGN_FLAGS:
        assert flag[2:] not in flags_listed, (script, flag)
    assert "--helpfull" in done.stdout
    # Issue 13.7: the help starts with the tool's description, no library warning before it
    # (Beam's "apitools not found" at import, TensorFlow's start-up notes).
    assert phrase in done.stdout.split("\n", 1)[0], done.stdout[:500]
    assert done.stderr == "", (script, done.stderr[:1000])


def test_tilde_in_a_path_flag_is_the_home_folder_never_a_folder_named_tilde(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    done = _run(
        [
            str(BIN / "dfd-synthetic"),
            "--output_dir=~/raw",
            "--image_size=16",
            "--num_per_class_per_split=1",
        ],
        cwd=cwd,
        env={"HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (home / "raw" / "train.csv").exists()
    assert not (cwd / "~").exists()


def test_a_user_error_is_one_line_without_traceback_unless_verbosity_asks(tmp_path):
    args = [str(BIN / "dfd-report"), f"--report_dir={tmp_path / 'missing'}"]
    quiet = _run(args)
    assert quiet.returncode == 1
    lines = [line for line in quiet.stderr.splitlines() if line.startswith("dfd-report:")]
    assert len(lines) == 1 and "missing" in lines[0], quiet.stderr
    assert "Traceback" not in quiet.stderr
    verbose = _run(args + ["--verbosity=1"])
    assert verbose.returncode != 0
    assert "Traceback" in verbose.stderr
    # A missing required flag (absl's UsageError) reads the same way.
    usage = _run([str(BIN / "dfd-report")])
    assert usage.returncode == 1
    assert usage.stderr.strip().splitlines()[-1] == (
        "dfd-report: error: --report_dir is required: the folder trainer.evaluate wrote "
        "report.json to."
    )


def test_expand_user_leaves_urls_and_plain_paths_alone():
    assert cli.expand_user("~/x") == os.path.join(os.path.expanduser("~"), "x")
    assert cli.expand_user("gs://b/~x") == "gs://b/~x"
    assert cli.expand_user("rel/~x") == "rel/~x"
    assert cli.one_line(ValueError("a\n  b")) == "a b"


def test_a_non_finite_sampling_rate_is_refused_at_start_up(tmp_path):
    # Issue 20: inf gave a ZeroDivisionError traceback, nan "cannot convert float NaN".
    # dfd-build-video-dataset registers the same validator (and its FrameOptions check
    # is tested in tests/tfds_builder/test_video_build.py); one subprocess is enough.
    done = _run([str(BIN / "dfd-predict"), "--frames_per_second=inf", str(tmp_path)])
    assert done.returncode == 1, done.stderr[-2000:]
    assert "--frames_per_second must be a finite number > 0" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_require_positive_finite_accepts_unset_and_positive_values():
    from absl import flags

    values = flags.FlagValues()
    flags.DEFINE_float("rate", None, "A rate.", flag_values=values)
    cli.require_positive_finite("rate", flag_values=values)
    values(["prog", "--rate=2.5"])
    assert values.rate == 2.5
    for bad in ("inf", "-inf", "nan", "0", "-1"):
        with pytest.raises(flags.IllegalFlagValueError, match="finite number > 0"):
            values(["prog", f"--rate={bad}"])
