"""The package builds into what Dataflow workers and the Docker images install.

Dataflow (`--setup_file=./setup.py`) builds an sdist and pip-installs it on every
worker; the images run `pip install .`, which builds a wheel. Both must carry every
package, the flagfiles and the builder's data files. Built from a copy of the source
tree so that build/ and *.egg-info never land in the checkout other tests read.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Local state that is not source (see .gitignore and .dockerignore).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    "out",
    "demo_out",
    "bench_out",
)
EXPECTED = [
    "preprocessing/gcs.py",
    "preprocessing/paths.py",
    "preprocessing/schema.py",
    "trainer/export.py",
    "deploy/storage.py",
    "deploy/configs/demo_cpu.cfg",
    "deploy/configs/140k_resnet50_1gpu.cfg",
    "deploy/configs/140k_resnet50_8gpu.cfg",
    "deploy/configs/multiworker.cfg",
    "trainer/serving/static/index.html",
    "trainer/serving/static/app.js",
    "trainer/serving/static/style.css",
]


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    target = tmp_path_factory.mktemp("src") / "deepfake-detection"
    shutil.copytree(REPO, target, ignore=_NOT_SOURCE)
    return target


def build(args, cwd):
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_pip_wheel_builds_with_packages_flagfiles_and_console_scripts(source_copy, tmp_path):
    # --no-build-isolation: the build uses this venv's setuptools instead of fetching one.
    build(
        ["-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        source_copy,
    )
    (wheel,) = [f for f in os.listdir(tmp_path) if f.endswith(".whl")]
    with zipfile.ZipFile(tmp_path / wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert set(EXPECTED) <= names, sorted(set(EXPECTED) - names)
    assert any(n.startswith("tfds_builder/") for n in names)
    for line in (
        "dfd-storage = deploy.storage:run_main",
        "dfd-serve = trainer.serve:run_main",
        "dfd-train = trainer.task:run_main",
        "dfd-build-dataset = tfds_builder.build:run_main",
    ):
        assert line in scripts
    assert not any(n.startswith("tests/") for n in names)


def test_sdist_for_dataflow_workers_carries_the_same_files(source_copy, tmp_path):
    build(["setup.py", "-q", "sdist", "-d", str(tmp_path)], source_copy)
    (sdist,) = os.listdir(tmp_path)
    with tarfile.open(tmp_path / sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert set(EXPECTED) <= names, sorted(set(EXPECTED) - names)
    assert "setup.py" in names and "README.md" in names  # setup.py reads README.md
