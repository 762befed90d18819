"""The commands a user types: `python -m preprocessing.synthetic`, `python -m
preprocessing.build` and `tfds build`.

Run as subprocesses from the repository root, exactly as documented.
"""

import os
import pathlib
import subprocess
import sys

import tensorflow_datasets as tfds

REPO = pathlib.Path(__file__).resolve().parents[2]


def _run(args, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _splits(dataset_dir):
    info = tfds.builder_from_directory(str(dataset_dir)).info
    return {name: split.num_examples for name, split in info.splits.items()}


def test_synthetic_then_build(tmp_path):
    """In-process runner here: test_build and the builder test cover the 2-process default."""
    raw, data = tmp_path / "raw", tmp_path / "data"
    made = _run(
        [
            sys.executable,
            "-m",
            "preprocessing.synthetic",
            f"--output_dir={raw}",
            "--image_size=32",
            "--num_per_class_per_split=train=3,valid=2,test=2",
        ]
    )
    assert made.returncode == 0, made.stderr[-3000:]
    built = _run(
        [
            sys.executable,
            "-m",
            "tfds_builder.build",
            f"--manual_dir={raw}",
            f"--data_dir={data}",
            "--running_mode=in_memory",
        ]
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "Beam runner: FnApiRunner (local, in_memory, 1 worker)" in built.stderr
    assert "| train | real | 3 | 3 | 0 | 0 | 0 |" in built.stdout
    assert "| validation | fake | 2 | 2 | 0 | 0 | 0 |" in built.stdout
    dataset_dir = data / "real_and_fake_faces" / "1.0.0"
    assert _splits(dataset_dir) == {"train": 6, "validation": 4, "test": 4}
    assert (dataset_dir / "rejects.jsonl").read_text() == ""


def test_tfds_build_cli(tmp_path):
    raw, data = tmp_path / "raw", tmp_path / "data"
    from preprocessing import synthetic  # pylint: disable=import-outside-toplevel

    synthetic.write_dataset(str(raw), 16, {"train": 2, "valid": 1, "test": 1}, seed=2)
    tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
    result = _run(
        [
            str(tfds_cli),
            "build",
            "tfds_builder/real_and_fake_faces",
            f"--manual_dir={raw}",
            f"--data_dir={data}",
            "--beam_pipeline_options=direct_running_mode=in_memory",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dataset_dir = data / "real_and_fake_faces" / "1.0.0"
    assert _splits(dataset_dir) == {"train": 4, "validation": 2, "test": 2}
    assert (dataset_dir / "build_summary.json").is_file()
