"""The inputs of a dataset build, whatever the dataset: one `SourceFile` per file, checked.

Both builds (`preprocessing.real_and_fake_faces.sources` for face images,
`preprocessing.video_faces.sources` for videos) list their inputs through
this module, so a file is judged the same way in both:

- only regular files are inputs; on local disks each entry is classified
  without opening it (`local_entry`): a named pipe, socket or device is
  `not_a_regular_file` (reading a FIFO would hang the job), a symbolic link
  out of `manual_dir` is `link_outside_input` unless allowed, a dangling or
  looping link is `broken_link`;
- a link to a file that is already an input is `linked_copy`
  (`mark_linked_copies`): no file is read twice;
- `<split>/{real,fake}/` trees are read by `split_folders` and `class_folders`;
- the list goes to the Beam job as a JSON-lines file (`write_source_list`), not
  inside the job graph.

Each dataset module adds its own problems (a CSV row without a file, say) and
words them for its layout in its own `PROBLEM_DETAILS`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import stat

from absl import logging
import tensorflow as tf

from preprocessing import paths, schema

# Problems that keep an input from being read; each becomes a reject with its reason.
MISSING_FILE = "missing_file"  # Listed (CSV, split list), not on disk.
LABEL_CONFLICT = "label_conflict"  # The list's label and the class folder disagree.
NOT_REGULAR_FILE = "not_a_regular_file"  # A FIFO, socket or device: never opened.
LINK_OUTSIDE = "link_outside_input"  # A symbolic link leading out of manual_dir.
BROKEN_LINK = "broken_link"  # A link to nothing, or a loop of links.
LINKED_COPY = "linked_copy"  # A link to a file that is already an input.
# What each problem means, for rejects.jsonl (SourceFile.note adds the specifics).
PROBLEM_DETAILS = {
    MISSING_FILE: "listed but not on disk",
    LABEL_CONFLICT: "the listed label disagrees with the class folder",
    NOT_REGULAR_FILE: "not a regular file (a named pipe, socket or device); not read",
    LINK_OUTSIDE: "a symbolic link to a file outside --manual_dir; not followed "
    "(--allow_links_outside_input follows it)",
    BROKEN_LINK: "a symbolic link that leads nowhere (missing target or a loop of links)",
    LINKED_COPY: "a symbolic link to a file that is already an input; read once, under the "
    "other name",
}


@dataclasses.dataclass(frozen=True, order=True)
class SourceFile:
    """One input: where it is, and what the dataset says it is.

    Attributes:
        id: path relative to the image root, '/'-separated, e.g. "valid/fake/0A1B.jpg";
            unique across splits, stable across machines: the example key.
        path: full path (local or gs://).
        split: TFDS split name ("train", "validation", "test").
        label: label id (schema.REAL or schema.FAKE).
        problem: "" when the input is to be read, else why it cannot be
            (one of PROBLEM_DETAILS' keys).
        size: bytes when listed (-1: unknown); part of the input fingerprint.
        crc32c: base64 CRC32C when the listing gives it for free (gs://), else "".
        note: specifics of the problem, e.g. which input a linked copy repeats.
    """

    id: str
    path: str
    split: str
    label: int
    problem: str = ""
    size: int = -1
    crc32c: str = ""
    note: str = ""


def is_dir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def split_folders(folder: str) -> dict[str, str]:
    """TFDS split -> folder name, for the split folders under `folder` that hold class folders."""
    found: dict[str, str] = {}
    if not is_dir(folder):
        return found
    for name in paths.listdir(folder):
        if name.lower() not in schema.SPLIT_FOLDERS:
            continue
        split_dir = paths.join(folder, name)
        if not is_dir(split_dir):
            continue
        classes = {entry.lower() for entry in paths.listdir(split_dir)}
        if not classes & set(schema.LABEL_NAMES):
            continue
        split = schema.split_from_folder(name)
        if split in found:
            raise ValueError(
                f"{folder} has both {found[split]!r} and {name!r} folders for the {split!r} "
                "split; keep one of them."
            )
        found[split] = name
    return found


@dataclasses.dataclass(frozen=True)
class Entry:
    """One name in a class folder, as the listing saw it (nothing was opened)."""

    relative: str
    label: int
    problem: str = ""
    size: int = -1
    crc32c: str = ""
    file_key: tuple | None = None  # (device, inode) of the file read, local disks only.
    is_link: bool = False
    note: str = ""


def is_within(path: str, root: str) -> bool:
    return os.path.commonpath([root, path]) == root


def folder_via_link(folder: str, manual_dir: str) -> bool:
    """Whether a local `folder` under `manual_dir` is reached through a symbolic link.

    True when the folder, or any folder between it and `manual_dir` (a split
    folder, a class folder, the layout root), is a link: its real place is then
    not its own place under `manual_dir`'s real path. One rule for both builds:
    files found through such a folder are checked by `local_entry` as links are
    (`link_outside_input` when they lead out of `manual_dir`), since the folder
    that holds them is not where it seems. `manual_dir` itself may be a link.
    """
    manual_real = os.path.realpath(manual_dir)
    relative = os.path.relpath(os.path.abspath(folder), os.path.abspath(manual_dir))
    own_place = os.path.normpath(os.path.join(manual_real, relative))
    return os.path.realpath(folder) != own_place


def local_entry(
    path: str,
    relative: str,
    label: int,
    root_real: str,
    allow_links_outside: bool,
    folder_via_link: bool,
) -> Entry | None:
    """Classifies one local directory entry by lstat/stat; None for folders.

    `folder_via_link`: the entry's folder is reached through a link (a linked class
    or split folder), so the file is not in its own place either.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None  # Gone since the folder was read: not an input (a CSV row says "missing").
    is_link = stat.S_ISLNK(info.st_mode)
    if is_link:
        try:
            info = os.stat(path)  # Follows the link; ELOOP or ENOENT when it leads nowhere.
        except OSError:
            return Entry(relative, label, BROKEN_LINK, is_link=True)
    if (is_link or folder_via_link) and not allow_links_outside:
        if not is_within(os.path.realpath(path), root_real):
            return Entry(relative, label, LINK_OUTSIDE, is_link=True)
    if stat.S_ISDIR(info.st_mode):
        return None
    via_link = is_link or folder_via_link
    if not stat.S_ISREG(info.st_mode):
        return Entry(relative, label, NOT_REGULAR_FILE, is_link=via_link)
    return Entry(
        relative,
        label,
        size=info.st_size,
        file_key=(info.st_dev, info.st_ino),
        is_link=via_link,
    )


def class_folders(image_root: str, split_folder: str) -> list[tuple[str, int]]:
    """(class folder name, label) under one split folder; warns about other names."""
    found = []
    split_dir = paths.join(image_root, split_folder)
    for class_name in paths.listdir(split_dir):
        if class_name.lower() not in schema.LABEL_NAMES:
            logging.warning(
                "Ignoring %s: not a class folder (expected one of %s).",
                paths.join(split_dir, class_name),
                list(schema.LABEL_NAMES),
            )
            continue
        class_dir = paths.join(split_dir, class_name)
        if is_dir(class_dir):
            found.append((class_name, schema.label_from_name(class_name)))
    return found


def mark_linked_copies(entries: list[Entry]) -> list[Entry]:
    """Each local file is read once: a link to a file that is already an input is a reject.

    Among the names of one file, the input is the first name that is not a link
    (the file's own place), else the first link, in (split, path) order. Hard
    links are not treated specially: they are separate names of equal bytes,
    which the SHA-256 duplicate check reports.
    """
    by_file: dict[tuple, list[int]] = collections.defaultdict(list)
    for index, entry in enumerate(entries):
        if entry.file_key is not None and not entry.problem:
            by_file[entry.file_key].append(index)
    result = list(entries)
    for indices in by_file.values():
        if len(indices) < 2:
            continue
        owner = next((i for i in indices if not entries[i].is_link), indices[0])
        for index in indices:
            if index != owner and entries[index].is_link:
                result[index] = dataclasses.replace(
                    entries[index],
                    problem=LINKED_COPY,
                    note=f"same file as {entries[owner].relative}",
                )
    return result


def to_json(source: SourceFile) -> str:
    """One line of an input list file (see `write_source_list`)."""
    return json.dumps(dataclasses.asdict(source), sort_keys=True)


def from_json(line: str) -> SourceFile:
    """Inverse of `to_json`."""
    return SourceFile(**json.loads(line))


def write_source_list(path: str, source_files: list[SourceFile]) -> str:
    """Writes the inputs as JSON lines, for the Beam job to read.

    A file rather than `beam.Create(list)`: Create embeds its data in the job
    graph, and 140k inputs (tens of MB) exceed what Dataflow accepts in a job
    request; a file on gs:// is read by the workers instead.
    """
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(to_json(source) + "\n" for source in source_files))
    return path
