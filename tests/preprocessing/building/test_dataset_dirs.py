"""preprocessing.building.dataset_dirs: install on success, and what killed builds leave behind."""

import json
import os
import subprocess
import sys

import pytest

from preprocessing.building import dataset_dirs


def _version(folder, marker):
    os.makedirs(folder)
    (folder / "data.tfrecord").write_text(marker)
    (folder / "dataset_info.json").write_text("{}")
    return folder


@pytest.mark.parametrize("by_copy", [False, True], ids=["rename", "copy (gs:// way)"])
def test_install_replaces_the_previous_version_only_with_a_complete_one(tmp_path, by_copy):
    config_dir = tmp_path / "name" / "config"
    final = _version(config_dir / "1.1.0", "old")
    (final / "old-only.tfrecord").write_text("stale")
    staging = dataset_dirs.start_staging(str(config_dir))
    staged = _version(tmp_path / "staged" / "1.1.0", "new")
    dataset_dirs.install(str(staged), str(final), by_copy=by_copy)
    assert (final / "data.tfrecord").read_text() == "new"
    assert sorted(os.listdir(final)) == ["data.tfrecord", "dataset_info.json"]
    assert sorted(os.listdir(config_dir)) == sorted(["1.1.0", os.path.basename(staging)])


def _dead_owner(staging):
    """Rewrites owner.json as if a process that has ended had made the staging root."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    owner_path = os.path.join(staging, dataset_dirs.OWNER_FILENAME)
    with open(owner_path, encoding="utf-8") as f:
        owner = json.load(f)
    owner.update(pid=int(gone.stdout), pid_start="1")
    with open(owner_path, "w", encoding="utf-8") as f:
        json.dump(owner, f)


def test_leftovers_of_killed_builds_are_cleaned_restored_or_refused(tmp_path):
    config_dir = tmp_path / "name" / "config"
    _version(config_dir / "1.1.0", "current")
    live = dataset_dirs.start_staging(str(config_dir))  # This process: a live build.
    with pytest.raises(dataset_dirs.BuildInProgressError, match="Another build"):
        dataset_dirs.handle_leftovers(str(config_dir), "1.1.0")
    _dead_owner(live)
    messages = dataset_dirs.handle_leftovers(str(config_dir), "1.1.0")
    assert len(messages) == 1 and "left by a build that was killed" in messages[0]
    assert sorted(os.listdir(config_dir)) == ["1.1.0"]

    # Killed between "previous version aside" and "new version into place".
    os.rename(config_dir / "1.1.0", config_dir / f"{dataset_dirs.REPLACED_PREFIX}ab12_1.1.0")
    killed = dataset_dirs.start_staging(str(config_dir))
    _version(tmp_path / killed / "name" / "config" / "1.1.0", "finished")
    _dead_owner(killed)
    messages = dataset_dirs.handle_leftovers(str(config_dir), "1.1.0")
    assert (config_dir / "1.1.0" / "data.tfrecord").read_text() == "finished"
    assert sorted(os.listdir(config_dir)) == ["1.1.0"] and len(messages) == 3


def test_a_half_built_dataset_is_explained_in_one_line(tmp_path):
    (tmp_path / "name" / "config" / "incomplete.build-x").mkdir(parents=True)
    message = dataset_dirs.explain_unprepared(str(tmp_path), "name")
    assert "no finished dataset" in message and "\n" not in message
    _version(tmp_path / "name" / "config" / "1.1.0", "done")
    assert dataset_dirs.explain_unprepared(str(tmp_path), "name") is None
