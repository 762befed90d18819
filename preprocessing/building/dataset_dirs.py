"""The folders of one dataset config while builds come and go: staging, install, leftovers.

A build never writes into the folder readers use. Under TFDS' config folder
`<data_dir>/<name>/<config>/` it works in a staging root of its own and only
installs the finished version at the end:

    <version>/                            the dataset readers open
    incomplete.build-<time>-<id>/         a build in progress: owner.json (host, pid,
                                          start time) and TFDS' data_dir for the staged
                                          build, <name>/<config>/<version>/ inside
    incomplete.replaced-<id>_<version>/   the previous version during a swap (local disks)

So a build that fails (too many rejects) or is killed leaves the previous
version readable. Installing is two renames on a local disk (previous version
aside, new one into place; the folder is absent for the microseconds between
them). Cloud Storage has no folder rename: there the staged files are copied
over the previous ones, `dataset_info.json` deleted first and written last, so a
reader finds either no dataset (TFDS says it is not prepared) or a complete one
during the copy, which takes seconds to minutes; the previous version stays
readable for the whole build, which is the long part.

The next build looks at what killed builds left (`handle_leftovers`): a staging
root whose owner process is gone (same host) is removed, or installed when it
holds a finished build that a kill stopped before or during its install; a
previous version left aside by a killed swap is restored or removed; a staging
root of a live build on this host stops the new build (two builds must not
write one config); anything else is reported with its path, not touched.

Nothing here knows about images or a particular builder: a builder passes its
config folder and version (tfds_builder/beam_builder.py does).
"""

from __future__ import annotations

import datetime
import json
import os
import posixpath
import socket
import uuid

import tensorflow as tf

from preprocessing import paths, processes

INCOMPLETE_PREFIX = "incomplete."  # TFDS' own prefix for unfinished folders.
STAGING_PREFIX = "incomplete.build-"
REPLACED_PREFIX = "incomplete.replaced-"
OWNER_FILENAME = "owner.json"
DATASET_INFO = "dataset_info.json"


class BuildInProgressError(RuntimeError):
    """Another live build on this machine is writing the same dataset config."""


def owner_record() -> dict:
    """Who is building: enough to tell later whether that process still runs."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": processes.start_time(pid),
        "boot_id": processes.boot_id(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def owner_alive(owner: dict) -> bool | None:
    """True/False for an owner on this machine; None when it ran elsewhere."""
    if owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot_id") and owner["boot_id"] != processes.boot_id():
        return False  # The machine restarted since.
    return processes.running(int(owner.get("pid", -1)), owner.get("pid_start", ""))


def _describe(owner: dict | None) -> str:
    if not owner:
        return "owner unknown"
    return f"pid {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}"


def start_staging(config_dir: str) -> str:
    """Creates a staging root in `config_dir` with this process' owner record."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    root = paths.join(config_dir, f"{STAGING_PREFIX}{stamp}-{uuid.uuid4().hex[:6]}")
    tf.io.gfile.makedirs(root)
    with tf.io.gfile.GFile(paths.join(root, OWNER_FILENAME), "w") as f:
        f.write(json.dumps(owner_record(), indent=1))
    return root


def is_complete(version_dir: str) -> bool:
    """Whether a version folder holds a finished dataset (TFDS writes dataset_info.json last)."""
    return tf.io.gfile.exists(paths.join(version_dir, DATASET_INFO))


def _files(folder: str) -> list[str]:
    """Paths of every file under `folder`, relative to it, '/'-separated."""
    found = []
    for root, _, names in tf.io.gfile.walk(folder):
        relative_root = root[len(folder.rstrip("/")) :].strip("/")
        found.extend("/".join(p for p in (relative_root, name) if p) for name in names)
    return sorted(found)


def install(staged: str, final: str, *, by_copy: bool | None = None) -> None:
    """Makes the finished version folder `staged` the one readers open at `final`.

    Args:
        staged: a complete version folder (inside a staging root).
        final: where readers look (`<config_dir>/<version>`).
        by_copy: copy files instead of renaming folders; default: on gs:// only
            (see the module docstring). Tests force it on local disks.
    """
    by_copy = "://" in final if by_copy is None else by_copy
    if by_copy:
        _install_by_copy(staged, final)
        return
    aside = None
    if tf.io.gfile.exists(final):
        aside = paths.join(
            posixpath.dirname(final.rstrip("/")),
            f"{REPLACED_PREFIX}{uuid.uuid4().hex[:6]}_{posixpath.basename(final.rstrip('/'))}",
        )
        os.rename(final, aside)
    try:
        os.rename(staged, final)
    except OSError:
        if aside is not None:
            os.rename(aside, final)
        raise
    if aside is not None:
        tf.io.gfile.rmtree(aside)


def _install_by_copy(staged: str, final: str) -> None:
    new_files = _files(staged)
    old_files = set(_files(final)) if tf.io.gfile.exists(final) else set()
    if DATASET_INFO in old_files:
        tf.io.gfile.remove(paths.join(final, DATASET_INFO))  # "Not prepared" from here on.
    for relative in new_files:
        if relative != DATASET_INFO:
            target = paths.join(final, relative)
            tf.io.gfile.makedirs(posixpath.dirname(target))
            tf.io.gfile.copy(paths.join(staged, relative), target, overwrite=True)
    for relative in sorted(old_files - set(new_files)):
        tf.io.gfile.remove(paths.join(final, relative))
    tf.io.gfile.copy(paths.join(staged, DATASET_INFO), paths.join(final, DATASET_INFO), True)
    tf.io.gfile.rmtree(staged)


def _read_owner(root: str) -> dict | None:
    path = paths.join(root, OWNER_FILENAME)
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f)
    except (tf.errors.NotFoundError, ValueError):
        return None


def _staged_versions(root: str, version: str) -> list[str]:
    """Complete `<name>/<config>/<version>` folders inside a staging root."""
    return sorted(
        posixpath.dirname(info)
        for info in tf.io.gfile.glob(paths.join(root, "*", "*", version, DATASET_INFO))
    )


def handle_leftovers(config_dir: str, version: str) -> list[str]:
    """Cleans up after killed builds in `config_dir`; returns one message per action.

    Raises:
        BuildInProgressError: a live build on this machine owns a staging root here.
    """
    if not tf.io.gfile.isdir(config_dir):
        return []
    final = paths.join(config_dir, version)
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(config_dir))
    messages = []
    for name in (n for n in names if n.startswith(STAGING_PREFIX)):
        root = paths.join(config_dir, name)
        owner = _read_owner(root)
        alive = owner_alive(owner) if owner else None
        if alive:
            raise BuildInProgressError(
                f"Another build ({_describe(owner)}) is writing {config_dir}. Fix: wait for it "
                "to finish, or stop it; its leftovers are cleaned up by the next build."
            )
        if alive is None:
            messages.append(
                f"Left in place: {root}, an unfinished build ({_describe(owner)}). Fix: delete "
                "it if no build is running there."
            )
            continue
        staged = _staged_versions(root, version)
        if staged and not is_complete(final):
            install(staged[0], final)
            messages.append(
                f"Installed {final} from {root}: that build ({_describe(owner)}) had finished "
                "but was killed while installing it."
            )
        tf.io.gfile.rmtree(root)
        messages.append(f"Removed {root}, left by a build that was killed ({_describe(owner)}).")
    for name in (n for n in names if n.startswith(REPLACED_PREFIX)):
        aside = paths.join(config_dir, name)
        if name.endswith(f"_{version}") and not is_complete(final):
            if tf.io.gfile.exists(final):
                tf.io.gfile.rmtree(final)
            os.rename(aside, final)
            messages.append(f"Restored {final}: a killed build had set it aside at {aside}.")
        else:
            tf.io.gfile.rmtree(aside)
            messages.append(f"Removed {aside}: the previous version, replaced by a later build.")
    for name in names:
        if name.startswith(INCOMPLETE_PREFIX) and not name.startswith(
            (STAGING_PREFIX, REPLACED_PREFIX)
        ):
            messages.append(
                f"Left in place: {paths.join(config_dir, name)}, an unfinished folder of another "
                "tool or an older build. Fix: delete it if no build is running."
            )
    return messages


def explain_unprepared(data_dir: str, name: str) -> str | None:
    """One line for a reader that finds no prepared dataset but a half-built one; else None.

    TFDS' own error for that case lists every dataset it knows (hundreds of lines).
    """
    dataset_dir = paths.join(data_dir, name)
    if not tf.io.gfile.isdir(dataset_dir):
        return None
    prepared, unfinished = [], []
    for info in tf.io.gfile.glob(paths.join(dataset_dir, "*", DATASET_INFO)) + tf.io.gfile.glob(
        paths.join(dataset_dir, "*", "*", DATASET_INFO)
    ):
        (unfinished if INCOMPLETE_PREFIX in info else prepared).append(info)
    if prepared:
        return None
    for pattern in ("*", "*/*"):
        unfinished += [
            p
            for p in tf.io.gfile.glob(paths.join(dataset_dir, pattern))
            if posixpath.basename(p.rstrip("/")).startswith(INCOMPLETE_PREFIX)
        ]
    if not unfinished:
        return None
    return (
        f"{dataset_dir} holds no finished dataset, only what an unfinished build left "
        f"({posixpath.basename(sorted(unfinished)[0].rstrip('/'))}): a build was killed, failed "
        "or is still running. Fix: run dfd-build-dataset again with the same flags (it cleans "
        "that up), or wait for the running build to finish."
    )
