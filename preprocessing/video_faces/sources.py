"""Finds the videos under `manual_dir` and decides each one's split, label, source and group.

Three layouts (`LAYOUTS`), local or gs://:

- `folders`: `<split>/{real,fake}/**/<video>`, split being `train`, `valid` or
  `validation`, `test` (as the image build's tree, one level down allowed). The
  class folder gives the label; the first folder under it, if any, names the
  source (`train/fake/Deepfakes/x.mp4` -> "Deepfakes"), else the class name does.
  The split folder gives the split.
- `faceforensics`: FaceForensics++ as its download script writes it:
  `original_sequences/youtube/<compression>/videos/NNN.mp4` (real, source
  "youtube") and `manipulated_sequences/<Method>/<compression>/videos/AAA_BBB.mp4`
  (fake, source `<Method>`: Deepfakes, Face2Face, FaceSwap, NeuralTextures,
  FaceShifter, or any other method folder with the same naming). One
  compression is read (`raw`/`c0`, `c23`, `c40`; default c23). AAA_BBB is made
  from the original videos AAA and BBB, so the two form one group. Split: the
  official lists `train.json`, `val.json`, `test.json` (JSON lists of [AAA, BBB]
  pairs; looked for in manual_dir, the FF++ folder and their `splits/`) when the
  user supplies them: a pair's two originals and their manipulations all go to
  that pair's split; without lists, each group (originals linked by their
  manipulations) goes to a split by a hash of its name. The DeepFakeDetection
  videos and their `actors` originals are not read (different naming, no
  official split); a warning names them.
- `celeb_df`: Celeb-DF (v1/v2): `Celeb-real/idX_NNNN.mp4` (real, source
  "celeb"), `YouTube-real/NNNNN.mp4` (real, "youtube"),
  `Celeb-synthesis/idX_idY_NNNN.mp4` (fake, "celeb_synthesis": made from
  Celeb-real's idX_NNNN with idY's face, so the two form one group); videos
  may sit one folder deeper (e.g. `Celeb-real/videos/`). Split: the videos of
  `List_of_testing_videos.txt` (lines `<1 real | 0 fake> <folder>/<video>`) are
  `test`, exactly as published; the others go to `train` or `validation` by a
  hash of their group, except those made from the same source video as a test
  video, which are left out (`leaks_test_source`) so that no source video is on
  both sides. Without the list, groups are hashed into all three splits.

Splits are decided per group, never per frame: every frame of a video, and
every video made from the same source video, lands in one split. The hash split
(`hash_split`) depends only on the group's name, so it is the same on every
machine and for every run; `validation_fraction` and `test_fraction` set it.

Only files named like videos (`preprocessing.media.video.VIDEO_EXTENSIONS`) are
inputs; other files are counted and named in a warning. Files are classified as
in every build (`preprocessing.building.inputs`): a named pipe, a link out of
manual_dir, a broken link or a second link to the same file becomes an input
with a `problem`, which the Beam job reports as a reject, never a silent drop.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re

from absl import logging
import tensorflow as tf

from preprocessing import paths, schema
from preprocessing.building import inputs
from preprocessing.media import video

LAYOUTS = ("folders", "faceforensics", "celeb_df")
FFPP_COMPRESSIONS = {"raw": ("raw", "c0"), "c0": ("c0", "raw"), "c23": ("c23",), "c40": ("c40",)}
# Folders of FaceForensics++ that are not read: other naming, no official split.
FFPP_SKIPPED = ("original_sequences/actors", "manipulated_sequences/DeepFakeDetection")
FFPP_SPLIT_FILES = {"train": "train.json", "validation": "val.json", "test": "test.json"}
CELEB_DF_FOLDERS = {
    "celeb-real": (schema.REAL, "celeb"),
    "youtube-real": (schema.REAL, "youtube"),
    "celeb-synthesis": (schema.FAKE, "celeb_synthesis"),
}
CELEB_DF_TEST_LIST = "list_of_testing_videos.txt"  # Compared in lower case.

# Listing problems of video layouts (the file problems of `inputs` apply too).
NOT_IN_SPLIT_LIST = "not_in_split_list"
SPLIT_CONFLICT = "split_conflict"
LEAKS_TEST_SOURCE = "leaks_test_source"
PROBLEM_DETAILS = {
    **inputs.PROBLEM_DETAILS,
    inputs.MISSING_FILE: "listed in the split list but not on disk",
    inputs.LABEL_CONFLICT: "the split list's label disagrees with the folder's",
    NOT_IN_SPLIT_LIST: "in none of the split lists supplied",
    SPLIT_CONFLICT: "made from two source videos that the split lists put in different splits",
    LEAKS_TEST_SOURCE: "made from the same source video as a video of the official test list; "
    "left out of train/validation so that no source video is on both sides",
}
# Rejects that follow from the split rules, not from bad input.
DELIBERATE_PROBLEMS = frozenset({LEAKS_TEST_SOURCE})


@dataclasses.dataclass(frozen=True, order=True)
class VideoSource(inputs.SourceFile):
    """One input video: where it is, and what the dataset says it is.

    The fields of `inputs.SourceFile` (id, path, split, label, problem, size,
    crc32c, note: the fingerprint and the ledger read them), plus:
        source: the origin or generator ("youtube", "Deepfakes", ...), the
            examples' `source` feature.
        group: the name of the set of videos that must share a split (a video,
            an FF++ pair, a Celeb-DF source video).
    """

    source: str = ""
    group: str = ""


@dataclasses.dataclass(frozen=True)
class SplitOptions:
    """How videos without an official split list are split, and which FF++ compression."""

    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    ffpp_compression: str = "c23"

    def validate(self) -> None:
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name}={value} is not in [0, 1).")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"--validation_fraction={self.validation_fraction} and --test_fraction="
                f"{self.test_fraction} leave nothing for train; their sum must be below 1."
            )
        if self.ffpp_compression not in FFPP_COMPRESSIONS:
            raise ValueError(
                f"--ffpp_compression={self.ffpp_compression!r} is not one of "
                f"{sorted(FFPP_COMPRESSIONS)}."
            )


@dataclasses.dataclass(frozen=True)
class VideoLayout:
    """What `find_video_layout` found: the layout and the folder it starts at."""

    kind: str
    root: str
    manual_dir: str


def hash_split(group: str, options: SplitOptions, splits=schema.SPLITS) -> str:
    """The split of a group, from a hash of its name: stable across machines and runs.

    `splits` is the splits to choose from, in order (train first); the fractions
    of the ones left out are given to train.
    """
    value = int(hashlib.sha256(group.encode()).hexdigest()[:16], 16) / float(1 << 64)
    cut = 0.0
    for split, fraction in (
        ("validation", options.validation_fraction),
        ("test", options.test_fraction),
    ):
        if split in splits:
            if cut <= value < cut + fraction:
                return split
            cut += fraction
    return "train"


# ------------------------------------------------------------------------------ layouts


def _child_dirs(folder: str) -> dict[str, str]:
    """{lower-case name: name} of the folders directly under `folder`."""
    return {
        name.lower(): name
        for name in paths.listdir(folder)
        if tf.io.gfile.isdir(paths.join(folder, name))
    }


def _is_faceforensics(folder: str) -> bool:
    names = _child_dirs(folder)
    return "original_sequences" in names or "manipulated_sequences" in names


def _is_celeb_df(folder: str) -> bool:
    return bool(set(_child_dirs(folder)) & set(CELEB_DF_FOLDERS))


def _is_folders(folder: str) -> bool:
    return bool(inputs.split_folders(folder))


_DETECTORS = {
    "faceforensics": _is_faceforensics,
    "celeb_df": _is_celeb_df,
    "folders": _is_folders,
}
_EXPECTED = {
    "folders": "<split>/{real,fake}/**/<video> with split in train, valid/validation, test",
    "faceforensics": "FaceForensics++: original_sequences/youtube/<compression>/videos/ and "
    "manipulated_sequences/<Method>/<compression>/videos/",
    "celeb_df": "Celeb-DF: Celeb-real/, YouTube-real/, Celeb-synthesis/ "
    "(and List_of_testing_videos.txt)",
}


def find_video_layout(manual_dir: str, layout: str = "auto") -> VideoLayout:
    """Finds the layout under `manual_dir` (or one folder down).

    Args:
        layout: one of LAYOUTS, or "auto" (FaceForensics++, then Celeb-DF, then folders).

    Raises:
        FileNotFoundError: manual_dir does not exist.
        ValueError: no such layout there; the message lists what was expected and found.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"--layout={layout!r} is not 'auto' or one of {list(LAYOUTS)}.")
    if paths.looks_like_gcs_typo(manual_dir):
        raise ValueError(
            f"--manual_dir={manual_dir} is not a valid Cloud Storage URL: write gs://BUCKET/PATH."
        )
    if not tf.io.gfile.exists(manual_dir):
        raise FileNotFoundError(
            f"--manual_dir={manual_dir} does not exist. Fix: point it at a folder of videos "
            f"laid out as one of: {'; '.join(_EXPECTED.values())}."
        )
    if not tf.io.gfile.isdir(manual_dir):
        raise ValueError(f"--manual_dir={manual_dir} is a file; pass the folder of videos.")
    candidates = [manual_dir] + [
        paths.join(manual_dir, name) for name in _child_dirs(manual_dir).values()
    ]
    kinds = [layout] if layout != "auto" else ["faceforensics", "celeb_df", "folders"]
    for kind in kinds:
        for candidate in candidates:
            if _DETECTORS[kind](candidate):
                return VideoLayout(kind=kind, root=candidate, manual_dir=manual_dir)
    others = [k for k in LAYOUTS if k not in kinds and any(_DETECTORS[k](c) for c in candidates)]
    hint = (
        f" It looks like the {others[0]} layout: pass --layout={others[0]} (with `tfds build`: "
        f"--config={others[0]})."
        if others
        else ""
    )
    raise ValueError(
        f"--manual_dir={manual_dir} holds no "
        f"{' or '.join(_EXPECTED[k] for k in kinds)}.{hint} "
        f"Found: {paths.listdir(manual_dir)[:20]}."
    )


# ------------------------------------------------------------------------------ walking


@dataclasses.dataclass(frozen=True)
class _File:
    """One file under the layout's root, as listed (nothing opened)."""

    relative: str  # '/'-separated, relative to the layout root
    problem: str = ""
    size: int = -1
    crc32c: str = ""
    note: str = ""


def _walk_local(
    root: str, folder: str, allow_links_outside: bool, manual_dir: str | None = None
) -> list[_File]:
    """Every file under root/folder (recursively), classified by `inputs.local_entry`.

    Links are judged against `manual_dir` (default: `root`), as in the image
    build: a layout root, split or class folder that is a link out of it gives
    `link_outside_input` rejects, not inputs (`inputs.folder_via_link`).
    """
    manual_dir = manual_dir or root
    root_real = os.path.realpath(manual_dir)
    start = os.path.join(root, folder) if folder else root
    via_link = inputs.folder_via_link(start, manual_dir)
    entries = []
    pending = [folder]
    while pending:
        current = pending.pop()
        absolute = os.path.join(root, current) if current else root
        with os.scandir(absolute) as names:
            for item in sorted(names, key=lambda e: e.name):
                if item.name.startswith("."):
                    continue  # File-system litter (.DS_Store, ._x.mp4), as in the image build.
                relative = f"{current}/{item.name}" if current else item.name
                if item.is_dir(follow_symlinks=False):
                    pending.append(relative)
                    continue
                # Folders are walked here, never through a link (see below): the file's own
                # folder is in its own place.
                entry = inputs.local_entry(
                    item.path, relative, 0, root_real, allow_links_outside, folder_via_link=via_link
                )
                if entry is None:
                    logging.warning("Not following %s: a link to a folder.", item.path)
                    continue
                entries.append(entry)
    entries.sort(key=lambda e: e.relative)
    checked = inputs.mark_linked_copies(entries)
    return [
        _File(e.relative, problem=e.problem, size=e.size, crc32c=e.crc32c, note=e.note)
        for e in checked
    ]


def _walk_gcs(root: str, folder: str) -> list[_File]:
    """Every object under root/folder/ with its size and CRC32C: one request per 1,000."""
    from preprocessing import gcs  # pylint: disable=import-outside-toplevel

    bucket_name, prefix = gcs.parse_url(paths.join(root, folder) if folder else root)
    root_prefix = gcs.parse_url(root)[1]
    root_prefix = f"{root_prefix}/" if root_prefix else ""
    client = gcs.make_client()
    found = []
    for blob in client.list_blobs(
        bucket_name, prefix=f"{prefix}/" if prefix else "", retry=gcs.make_retry()
    ):
        relative = blob.name[len(root_prefix) :]
        if not relative or relative.endswith("/"):
            continue
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        found.append(_File(relative, size=int(blob.size), crc32c=blob.crc32c or ""))
    return sorted(found, key=lambda f: f.relative)


def _walk_other(root: str, folder: str) -> list[_File]:
    found = []
    start = paths.join(root, folder) if folder else root
    for directory, _, names in tf.io.gfile.walk(start):
        for name in names:
            full = paths.join(directory, name)
            relative = full[len(root) :].lstrip("/")
            if not any(part.startswith(".") for part in relative.split("/")):
                found.append(_File(relative))
    return sorted(found, key=lambda f: f.relative)


def _walk(
    root: str, folder: str, allow_links_outside: bool, manual_dir: str | None = None
) -> tuple[list[_File], list[str]]:
    """(video files, other file names) under root/folder, relative to root."""
    if "://" not in root:
        files = _walk_local(root, folder, allow_links_outside, manual_dir)
    elif root.startswith("gs://"):
        files = _walk_gcs(root, folder)
    else:
        files = _walk_other(root, folder)
    videos = [f for f in files if f.relative.lower().endswith(video.VIDEO_EXTENSIONS)]
    others = [f.relative for f in files if not f.relative.lower().endswith(video.VIDEO_EXTENSIONS)]
    return videos, others


def _warn_skipped(root: str, others: list[str]) -> None:
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        logging.warning(
            "Skipped %d file(s) under %s that are not named like videos (%s): %s",
            len(others),
            root,
            "/".join(ext.lstrip(".") for ext in video.VIDEO_EXTENSIONS),
            shown,
        )


def _stem(relative: str) -> str:
    return os.path.splitext(relative.rsplit("/", 1)[-1])[0]


def _source(layout: VideoLayout, file: _File, split: str, label: int, **fields) -> VideoSource:
    return VideoSource(
        id=file.relative,
        path=paths.join(layout.root, file.relative),
        split=split,
        label=label,
        problem=fields.pop("problem", "") or file.problem,
        size=file.size,
        crc32c=file.crc32c,
        note=fields.pop("note", "") or file.note,
        **fields,
    )


# ------------------------------------------------------------------------------ folders


def _list_folders(layout: VideoLayout, options: SplitOptions, allow_links_outside: bool):
    split_folders = inputs.split_folders(layout.root)
    found = []
    skipped = []
    for split, split_folder in sorted(
        split_folders.items(), key=lambda s: schema.SPLITS.index(s[0])
    ):
        for class_name, label in inputs.class_folders(layout.root, split_folder):
            prefix = f"{split_folder}/{class_name}"
            videos, others = _walk(layout.root, prefix, allow_links_outside, layout.manual_dir)
            skipped.extend(others)
            for file in videos:
                inner = file.relative[len(prefix) + 1 :].split("/")
                source = inner[0] if len(inner) > 1 else class_name.lower()
                found.append(
                    _source(layout, file, split, label, source=source, group=file.relative)
                )
    _warn_skipped(layout.root, skipped)
    del options  # The folders decide the splits.
    return found


# ------------------------------------------------------------------------------ FaceForensics++

_FFPP_NAME = re.compile(r"^(\d+)(?:_(\d+))?$")


def _ffpp_videos_folder(root: str, base: str, compression: str) -> str | None:
    """`<base>/<compression>/videos` under root, trying the compression's aliases."""
    for name in FFPP_COMPRESSIONS[compression]:
        folder = f"{base}/{name}/videos"
        if tf.io.gfile.isdir(paths.join(root, folder)):
            return folder
    return None


def _read_ffpp_split_lists(layout: VideoLayout) -> tuple[dict[str, str], list[str]]:
    """({original id: split}, list files read) from FF++'s train/val/test.json, if supplied.

    Raises:
        ValueError: a list that is not JSON pairs, or an id in two splits, naming the files.
    """
    folders = []
    for base in (layout.manual_dir, layout.root):
        for folder in (base, paths.join(base, "splits")):
            if folder not in folders:
                folders.append(folder)
    split_of: dict[str, str] = {}
    where: dict[str, str] = {}
    used = []
    for split, name in FFPP_SPLIT_FILES.items():
        path = next(
            (paths.join(f, name) for f in folders if tf.io.gfile.exists(paths.join(f, name))),
            None,
        )
        if path is None:
            continue
        used.append(path)
        with tf.io.gfile.GFile(path) as f:
            try:
                pairs = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path} is not JSON ({error}); expected FF++'s split list."
                ) from None
        if not isinstance(pairs, list) or not all(
            isinstance(p, (list, tuple)) and all(isinstance(i, (str, int)) for i in p)
            for p in pairs
        ):
            raise ValueError(
                f"{path} is not a JSON list of [id, id] pairs, as FF++'s split lists are "
                '(e.g. [["953", "974"], ...]).'
            )
        for pair in pairs:
            for original in pair:
                original = str(original)
                if split_of.get(original, split) != split:
                    raise ValueError(
                        f"Video {original} is in two split lists: {where[original]} and {path}."
                    )
                split_of[original] = split
                where[original] = path
    return split_of, used


def _components(links: list[tuple[str, ...]]) -> dict[str, str]:
    """Union-find: each id -> the smallest id it is linked to, directly or not."""
    parent: dict[str, str] = {}

    def find(item):
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for ids in links:
        first = find(ids[0])
        for other in ids[1:]:
            second = find(other)
            if first != second:
                first, second = min(first, second), max(first, second)
                parent[second] = first
    return {item: find(item) for item in list(parent)}


def _list_faceforensics(layout: VideoLayout, options: SplitOptions, allow_links_outside: bool):
    root = layout.root
    folders = _ffpp_video_folders(root, options.ffpp_compression)
    listed: list[tuple[_File, int, str, tuple[str, ...]]] = []
    skipped = []
    for folder, label, source in folders:
        videos, others = _walk(root, folder, allow_links_outside, layout.manual_dir)
        skipped.extend(others)
        for file in videos:
            match = _FFPP_NAME.match(_stem(file.relative))
            ids = tuple(i for i in match.groups() if i) if match else ()
            listed.append((file, label, source, ids))
    _warn_skipped(root, skipped)
    split_of, lists = _read_ffpp_split_lists(layout)
    if lists:
        logging.info("FaceForensics++ splits from %s.", ", ".join(lists))
    else:
        logging.info(
            "FaceForensics++ without split lists (train.json, val.json, test.json): groups of "
            "originals and their manipulations are split by a hash of their names."
        )
    component = _components([ids for _, _, _, ids in listed if ids])
    found = []
    for file, label, source, ids in listed:
        group = component[ids[0]] if ids else file.relative
        fields = {"source": source, "group": f"faceforensics:{group}"}
        if lists:
            split = _ffpp_listed_split(ids, split_of, fields)
        else:
            split = hash_split(fields["group"], options)
        found.append(_source(layout, file, split, label, **fields))
    return found


def _ffpp_video_folders(root: str, compression: str) -> list[tuple[str, int, str]]:
    """(videos folder, label, source) of the originals and each method, at `compression`.

    Warns about what is not read (a method without that compression, the
    DeepFakeDetection folders).

    Raises:
        ValueError: no folder of that compression at all, naming the flag to change.
    """
    names = _child_dirs(root)
    folders: list[tuple[str, int, str]] = []
    if "original_sequences" in names:
        base = f"{names['original_sequences']}/youtube"
        folder = _ffpp_videos_folder(root, base, compression)
        if folder:
            folders.append((folder, schema.REAL, "youtube"))
        else:
            logging.warning(
                "%s has no %s/videos folder: no real video is read.",
                paths.join(root, base),
                compression,
            )
    if "manipulated_sequences" in names:
        folders.extend(_ffpp_method_folders(root, names["manipulated_sequences"], compression))
    skipped_folders = [f for f in FFPP_SKIPPED if tf.io.gfile.isdir(paths.join(root, f))]
    if skipped_folders:
        logging.warning(
            "Not read: %s (DeepFakeDetection and its actors have another naming and no official "
            "split; build them as a <split>/{real,fake}/ tree if you want them).",
            ", ".join(skipped_folders),
        )
    if not folders:
        raise ValueError(
            f"{root} has no {compression} videos: expected "
            f"original_sequences/youtube/{compression}/videos/ or "
            f"manipulated_sequences/<Method>/{compression}/videos/. "
            "Fix: pass the compression you downloaded with --ffpp_compression."
        )
    return folders


def _ffpp_method_folders(root: str, base: str, compression: str) -> list[tuple[str, int, str]]:
    """(videos folder, FAKE, method) of each method folder under manipulated_sequences."""
    folders = []
    for method in paths.listdir(paths.join(root, base)):
        method_dir = f"{base}/{method}"
        if not tf.io.gfile.isdir(paths.join(root, method_dir)) or method.startswith("."):
            continue
        if f"manipulated_sequences/{method}" in FFPP_SKIPPED:
            continue
        folder = _ffpp_videos_folder(root, method_dir, compression)
        if folder:
            folders.append((folder, schema.FAKE, method))
        else:
            logging.warning(
                "%s has no %s/videos folder (it has: %s): not read.",
                paths.join(root, method_dir),
                compression,
                ", ".join(paths.listdir(paths.join(root, method_dir))),
            )
    return folders


def _ffpp_listed_split(ids: tuple[str, ...], split_of: dict[str, str], fields: dict) -> str:
    """The split the FF++ lists give a video made from originals `ids`.

    A video no list names, or whose originals the lists put in two splits, goes
    to train with a problem (added to `fields`), so it is rejected, not guessed.
    """
    splits = {split_of.get(i) for i in ids} if ids else {None}
    if splits == {None}:
        fields["problem"] = NOT_IN_SPLIT_LIST
        return "train"
    if len(splits) > 1:
        fields["problem"] = SPLIT_CONFLICT
        fields["note"] = ", ".join(f"{i}: {split_of.get(i) or 'no list'}" for i in ids)
        return "train"
    (split,) = splits
    return split


# ------------------------------------------------------------------------------ Celeb-DF

_CELEB_REAL = re.compile(r"^(id\d+)_(\d+)$")
_CELEB_FAKE = re.compile(r"^(id\d+)_id\d+_(\d+)$")


def _celeb_group(folder_key: str, stem: str) -> str:
    """The source video a Celeb-DF video comes from: idX_NNNN for idX_NNNN and idX_idY_NNNN."""
    pattern = _CELEB_FAKE if folder_key == "celeb-synthesis" else _CELEB_REAL
    match = pattern.match(stem) if folder_key != "youtube-real" else None
    if match:
        return f"celeb_df:{match.group(1)}_{match.group(2)}"
    return f"celeb_df:{folder_key}/{stem}"


def _key(relative: str) -> str:
    """`<top folder, lower case>/<file name>`: matches list entries with or without videos/."""
    parts = relative.strip("/").split("/")
    return f"{parts[0].lower()}/{parts[-1]}"


def _read_celeb_df_list(layout: VideoLayout) -> tuple[dict[str, tuple[int, str]], str | None]:
    """({key: (label, listed path)}, list path) from List_of_testing_videos.txt, if present.

    Raises:
        ValueError: a line that is not `<label> <path>`, naming file and line.
    """
    for folder in dict.fromkeys((layout.root, layout.manual_dir)):
        names = {name.lower(): name for name in paths.listdir(folder)}
        if CELEB_DF_TEST_LIST not in names:
            continue
        path = paths.join(folder, names[CELEB_DF_TEST_LIST])
        listed = {}
        with tf.io.gfile.GFile(path) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                parts = line.split()
                try:
                    if len(parts) != 2:
                        raise ValueError(
                            f"expected '<label> <folder>/<video>', got {len(parts)} fields"
                        )
                    label = schema.label_from_celeb_df_list(parts[0])
                except ValueError as error:
                    raise ValueError(f"{path}, line {number}: {error}") from None
                listed[_key(parts[1])] = (label, parts[1])
        return listed, path
    return {}, None


def _list_celeb_df(layout: VideoLayout, options: SplitOptions, allow_links_outside: bool):
    root = layout.root
    folders = {key: name for key, name in _child_dirs(root).items() if key in CELEB_DF_FOLDERS}
    listed, list_path = _read_celeb_df_list(layout)
    if list_path:
        logging.info("Celeb-DF test split from %s (%d videos).", list_path, len(listed))
    else:
        logging.info(
            "Celeb-DF without List_of_testing_videos.txt: videos are split by a hash of their "
            "source video."
        )
    files: list[tuple[_File, str]] = []
    skipped = []
    for key, name in sorted(folders.items()):
        videos, others = _walk(root, name, allow_links_outside, layout.manual_dir)
        skipped.extend(others)
        files.extend((file, key) for file in videos)
    _warn_skipped(root, skipped)
    groups = {file.relative: _celeb_group(key, _stem(file.relative)) for file, key in files}
    on_disk = {_key(file.relative) for file, _ in files}
    test_groups = {groups[f.relative] for f, _ in files if _key(f.relative) in listed}
    found = []
    for file, key in files:
        label, source = CELEB_DF_FOLDERS[key]
        fields = {"source": source, "group": groups[file.relative]}
        entry = listed.get(_key(file.relative))
        if entry is not None:
            split = "test"
            if entry[0] != label:
                fields["problem"] = inputs.LABEL_CONFLICT
                fields["note"] = (
                    f"{list_path} says {schema.LABEL_NAMES[entry[0]]}, the folder "
                    f"{schema.LABEL_NAMES[label]}"
                )
        elif list_path:
            split = hash_split(fields["group"], options, ("train", "validation"))
            if fields["group"] in test_groups:
                fields["problem"] = LEAKS_TEST_SOURCE
        else:
            split = hash_split(fields["group"], options)
        found.append(_source(layout, file, split, label, **fields))
    for key in sorted(set(listed) - on_disk):
        label, relative = listed[key]
        folder_key = key.split("/", 1)[0]
        found.append(
            VideoSource(
                id=relative,
                path=paths.join(root, relative),
                split="test",
                label=label,
                problem=inputs.MISSING_FILE,
                note=f"listed in {list_path}",
                source=CELEB_DF_FOLDERS.get(folder_key, (label, folder_key))[1],
                group=_celeb_group(folder_key, _stem(relative)),
            )
        )
    return found


# ------------------------------------------------------------------------------ entry point

_LISTERS = {
    "folders": _list_folders,
    "faceforensics": _list_faceforensics,
    "celeb_df": _list_celeb_df,
}


def list_videos(
    layout: VideoLayout,
    options: SplitOptions | None = None,
    *,
    allow_links_outside: bool = False,
) -> list[VideoSource]:
    """Every input video of every split, sorted by id, with its split, label, source, problem.

    Raises:
        ValueError: unreadable split lists, ids in two splits, or no video at all.
    """
    options = options or SplitOptions()
    options.validate()
    found = _LISTERS[layout.kind](layout, options, allow_links_outside)
    if not found:
        raise ValueError(
            f"No video under {layout.root} ({layout.kind} layout); videos are files named "
            f"*{', *'.join(video.VIDEO_EXTENSIONS)}."
        )
    ids = collections.Counter(source.id for source in found)
    repeated = sorted(i for i, n in ids.items() if n > 1)
    if repeated:
        raise ValueError(f"Two inputs share the id(s) {repeated[:3]}; check the split list.")
    counts = collections.Counter(
        (s.split, schema.LABEL_NAMES[s.label]) for s in found if not s.problem
    )
    logging.info(
        "%d videos (%s layout at %s): %s; %d with a listing problem.",
        len(found),
        layout.kind,
        layout.root,
        ", ".join(f"{split}/{label} {n}" for (split, label), n in sorted(counts.items())),
        sum(bool(s.problem) for s in found),
    )
    return sorted(found)


def from_json(line: str) -> VideoSource:
    """Inverse of `inputs.to_json` for a VideoSource (`inputs.write_source_list` writes them)."""
    return VideoSource(**json.loads(line))
