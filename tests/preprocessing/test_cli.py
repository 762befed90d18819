"""The commands a user types: `python -m preprocessing.synthetic`, `python -m
tfds_builder.build` (`dfd-build-dataset`) and `tfds build`.

Run as subprocesses from the repository root, exactly as documented.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import tensorflow_datasets as tfds

from preprocessing import schema, synthetic
from tfds_builder import build

REPO = pathlib.Path(__file__).resolve().parents[2]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def _run(args, timeout=300, env=None):
    return subprocess.run(
        args,
        cwd=REPO,
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _splits(dataset_dir):
    info = tfds.builder_from_directory(str(dataset_dir)).info
    return {name: split.num_examples for name, split in info.splits.items()}


def _examples(dataset_dir):
    builder = tfds.builder_from_directory(str(dataset_dir))
    return {
        split: [
            (e[schema.ID], e[schema.IMAGE])
            for e in tfds.as_numpy(
                builder.as_dataset(
                    split=split,
                    shuffle_files=False,
                    decoders={schema.IMAGE: tfds.decode.SkipDecoding()},
                )
            )
        ]
        for split in builder.info.splits
    }


@pytest.fixture(scope="module")
def cli_build(tmp_path_factory):
    """`python -m preprocessing.synthetic`, then the launcher with its default local runner."""
    root = tmp_path_factory.mktemp("cli")
    raw, data = root / "raw", root / "data"
    made = _run(
        [
            sys.executable,
            "-m",
            "preprocessing.synthetic",
            f"--output_dir={raw}",
            "--image_size=32",
            "--num_per_class_per_split=train=3,valid=2,test=2",
        ],
        # As a user's shell has it: TensorFlow's start-up notes print whatever this says.
        env={k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert made.returncode == 0, made.stderr[-3000:]
    assert "oneDNN" not in made.stderr and "InitializeLog" not in made.stderr, made.stderr
    built = _run(
        [
            sys.executable,
            "-m",
            "tfds_builder.build",
            f"--manual_dir={raw}",
            f"--data_dir={data}",
            "--num_workers=2",
        ]
    )
    return raw, data, built


def test_synthetic_then_build_shows_its_own_lines_and_logs_the_rest(cli_build, tmp_path):
    raw, data, built = cli_build
    assert built.returncode == 0, built.stderr[-3000:]
    assert "| train | real | 3 | 3 | 0 | 0 | 0 |" in built.stdout
    assert "| validation | fake | 2 | 2 | 0 | 0 | 0 |" in built.stdout
    dataset_dir = data / "real_and_fake_faces" / "keep_duplicates" / "1.1.0"
    assert f"Dataset: {dataset_dir} (built; Beam runner: FnApiRunner)" in built.stdout
    assert _splits(dataset_dir) == {"train": 6, "validation": 4, "test": 4}
    assert (dataset_dir / "rejects.jsonl").read_text() == ""

    # The console: the project's own lines only (it used to be ~200 lines for 240 images).
    console = built.stderr.splitlines()
    assert len(console) <= 10, built.stderr
    assert "Beam runner: FnApiRunner (local, multi_processing, 2 workers)" in built.stderr
    assert not [line for line in console if "Worker:" in line or "oneDNN" in line]
    (log,) = (data / "real_and_fake_faces" / "keep_duplicates" / "logs").iterdir()
    assert f"Log: {log}" in built.stdout
    text = log.read_text()
    assert "oneDNN" in text and "sdk_worker" in text  # TensorFlow's and the workers' lines.

    # Same examples, same order, as one in-process worker gives (runner-independent build).
    again = build.run(
        build.BuildConfig(
            manual_dir=str(raw), data_dir=str(tmp_path / "data"), running_mode="in_memory"
        )
    )
    assert _examples(again["dataset_dir"]) == _examples(dataset_dir)


def _descendants(pid):
    """Process ids whose parent chain leads to `pid` (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_build_takes_its_workers_along_and_keeps_the_previous_dataset(cli_build, tmp_path):
    """SIGKILL of the build's main process mid-pipeline, during an --overwrite rebuild."""
    raw, data, built = cli_build
    assert built.returncode == 0, built.stderr[-3000:]
    data_copy = tmp_path / "data"
    subprocess.run(["cp", "-a", str(data), str(data_copy)], check=True)
    dataset_dir = data_copy / "real_and_fake_faces" / "keep_duplicates" / "1.1.0"
    before = _examples(dataset_dir)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfds_builder.build",
            f"--manual_dir={raw}",
            f"--data_dir={data_copy}",
            "--num_workers=2",
            "--overwrite",
        ],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = set()
    try:
        deadline = time.monotonic() + 240
        while len(workers) < 2:  # Both Beam worker processes are up: the pipeline runs.
            assert process.poll() is None, "the build ended before its workers started"
            assert time.monotonic() < deadline, "no Beam workers after 240 s"
            workers = {p for p in _descendants(process.pid) if _alive(p)}
            workers = {p for p in workers if b"python" in _cmdline(p)}
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 20
        while [p for p in workers if _alive(p)] and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [p for p in workers if _alive(p)]
        assert not orphans, f"Beam workers outlived the build: {orphans}"
    finally:
        for pid in workers:  # Only if the assertion above failed: the test's own processes.
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()

    assert _examples(dataset_dir) == before  # The previous version is intact...
    config_dir = dataset_dir.parent
    assert [n for n in os.listdir(config_dir) if n.startswith("incomplete.")]  # ...beside this.
    # The next run cleans up what the killed one left, and says so.
    again = build.run(
        build.BuildConfig(manual_dir=str(raw), data_dir=str(data_copy), running_mode="in_memory")
    )
    assert again["action"] == "reused"
    assert len(again["leftovers"]) == 1 and "killed" in again["leftovers"][0]
    assert not [n for n in os.listdir(config_dir) if n.startswith("incomplete.")]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_tfds_build_cli_selects_a_config_and_expands_home_in_paths(tmp_path):
    """`tfds build` passes `--manual_dir=~/...` as typed (here the Kaggle zip): expanded."""
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    raw = tmp_path / "raw"
    synthetic.write_dataset(str(raw), 16, {"train": 2, "valid": 1, "test": 1}, seed=2)
    home.mkdir()
    cwd.mkdir()
    with zipfile.ZipFile(home / "archive.zip", "w") as zipped:
        for path in sorted(raw.rglob("*")):
            zipped.write(path, path.relative_to(raw))
    tfds_cli = pathlib.Path(sys.executable).parent / "tfds"
    result = subprocess.run(
        [
            str(tfds_cli),
            "build",
            str(REPO / "tfds_builder" / "real_and_fake_faces"),
            "--config=drop_duplicates",
            "--manual_dir=~/archive.zip",
            "--data_dir=~/data",
            "--beam_pipeline_options=direct_running_mode=in_memory",
        ],
        cwd=cwd,
        env=dict(_env(), HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dataset_dir = home / "data" / "real_and_fake_faces" / "drop_duplicates" / "1.1.0"
    assert _splits(dataset_dir) == {"train": 4, "validation": 2, "test": 2}
    assert (dataset_dir / "build_summary.json").is_file()
    assert os.listdir(cwd) == []  # No folder named `~` in the working directory.
