"""Finds the input images under `manual_dir` and decides each one's split and label.

Accepted layouts (local paths or gs:// URLs, everything through tf.io.gfile):

- the extracted Kaggle "140k Real and Fake Faces" download:
  `real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg` plus
  `train.csv`, `valid.csv`, `test.csv` beside `real_vs_fake/`;
- the Kaggle zip itself (the builder extracts it, then calls `find_layout` again);
- any `<split>/{real,fake}/` tree, split being `train`, `valid`/`validation`, `test`.

When a split has its CSV, the CSV is the list of inputs and the source of the
label (converted from Kaggle's 1 = real by `schema.label_from_kaggle_csv`, the
only place that does it); the folders are reconciled with it, and every
mismatch becomes an input with a `problem`, which the Beam job reports as a
reject instead of dropping it silently. Without a CSV the folders decide.

This is plain Python run once by the launcher: listing is a handful of
directory calls even for 140k files, and doing it up front lets the job fail
in seconds on a wrong `--manual_dir`.
"""

from __future__ import annotations

import csv
import dataclasses
import json

from absl import logging
import tensorflow as tf

from preprocessing import paths, schema

# Where the Kaggle download keeps its split folders, relative to manual_dir.
KAGGLE_IMAGE_ROOTS = ("real_vs_fake/real-vs-fake", "real-vs-fake", "real_vs_fake")
# Problems found while reconciling CSVs and folders; they become rejects.
MISSING_FILE = "missing_file"  # In the CSV, not on disk.
NOT_IN_CSV = "not_in_csv"  # On disk, not in the CSV.
LABEL_CONFLICT = "label_conflict"  # The CSV label and the class folder disagree.


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
            (MISSING_FILE, NOT_IN_CSV, LABEL_CONFLICT).
    """

    id: str
    path: str
    split: str
    label: int
    problem: str = ""


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `find_layout` found under manual_dir.

    Attributes:
        manual_dir: as given.
        image_root: folder holding the split folders; None when only a zip was found.
        split_folders: TFDS split name -> folder name under image_root ("valid", ...).
        csvs: TFDS split name -> CSV path, for the splits that have one.
        zip_path: the Kaggle zip, when there is no extracted folder.
    """

    manual_dir: str
    image_root: str | None
    split_folders: dict[str, str]
    csvs: dict[str, str]
    zip_path: str | None = None


def _is_dir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def _listdir(path: str) -> list[str]:
    # GCS listings name folders with a trailing slash.
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def _split_folders(folder: str) -> dict[str, str]:
    """TFDS split -> folder name, for the split folders under `folder` that hold class folders."""
    found: dict[str, str] = {}
    if not _is_dir(folder):
        return found
    for name in _listdir(folder):
        if name.lower() not in schema.SPLIT_FOLDERS:
            continue
        split_dir = paths.join(folder, name)
        if not _is_dir(split_dir):
            continue
        classes = {entry.lower() for entry in _listdir(split_dir)}
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


def find_layout(manual_dir: str) -> Layout:
    """Locates the image folders, the split CSVs and, failing those, a zip.

    Raises:
        FileNotFoundError: manual_dir does not exist.
        ValueError: nothing under manual_dir looks like the dataset; the message
            lists what was expected.
    """
    if not tf.io.gfile.exists(manual_dir):
        raise FileNotFoundError(
            f"--manual_dir={manual_dir} does not exist. Fix: point it at the extracted Kaggle "
            "'140k Real and Fake Faces' folder (the one holding real_vs_fake/ and train.csv), "
            "at its zip's folder, or at a <split>/{real,fake}/ tree."
        )
    candidates = [manual_dir] + [paths.join(manual_dir, sub) for sub in KAGGLE_IMAGE_ROOTS]
    # One or two unknown levels down as well, e.g. manual_dir/my_copy/real_vs_fake/...
    for child in _listdir(manual_dir):
        child_dir = paths.join(manual_dir, child)
        if _is_dir(child_dir):
            candidates.append(child_dir)
            candidates.extend(paths.join(child_dir, sub) for sub in KAGGLE_IMAGE_ROOTS)
    image_root, split_folders = None, {}
    for candidate in candidates:
        split_folders = _split_folders(candidate)
        if split_folders:
            image_root = candidate
            break
    csv_dirs = [manual_dir] + ([image_root] if image_root and image_root != manual_dir else [])
    csvs: dict[str, str] = {}
    for folder in csv_dirs:
        for kaggle_name in ("train", "valid", "validation", "test"):
            path = paths.join(folder, f"{kaggle_name}.csv")
            split = schema.split_from_folder(kaggle_name)
            if split not in csvs and tf.io.gfile.exists(path):
                csvs[split] = path
    zip_path = None
    if image_root is None:
        zips = sorted(tf.io.gfile.glob(paths.join(manual_dir, "*.zip")))
        if len(zips) > 1:
            raise ValueError(
                f"--manual_dir={manual_dir} holds several zips {zips} and no extracted dataset; "
                "keep only the Kaggle download's zip there, or extract it."
            )
        if not zips:
            raise ValueError(
                f"--manual_dir={manual_dir} holds no dataset: expected "
                "real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/ (the extracted Kaggle "
                "download), the Kaggle zip, or <split>/{real,fake}/ folders with split in "
                f"{sorted(schema.SPLIT_FOLDERS)}. Found: {_listdir(manual_dir)[:20]}."
            )
        zip_path = zips[0]
    return Layout(
        manual_dir=manual_dir,
        image_root=image_root,
        split_folders=split_folders,
        csvs=csvs,
        zip_path=zip_path,
    )


def _files_on_disk(image_root: str, split_folder: str) -> dict[str, int]:
    """Relative path -> label id for every file in `<split_folder>/{real,fake}/`."""
    files: dict[str, int] = {}
    split_dir = paths.join(image_root, split_folder)
    for class_name in _listdir(split_dir):
        if class_name.lower() not in schema.LABEL_NAMES:
            logging.warning(
                "Ignoring %s: not a class folder (expected one of %s).",
                paths.join(split_dir, class_name),
                list(schema.LABEL_NAMES),
            )
            continue
        class_dir = paths.join(split_dir, class_name)
        if not _is_dir(class_dir):
            continue
        label = schema.label_from_name(class_name)
        for name in _listdir(class_dir):
            # Dot files are file-system litter (.DS_Store, ._x.jpg), not inputs.
            if name.startswith("."):
                continue
            relative = f"{split_folder}/{class_name}/{name}"
            if not _is_dir(paths.join(class_dir, name)):
                files[relative] = label
    return files


def _read_csv(csv_path: str) -> list[tuple[str, int]]:
    """(path relative to the image root, our label id) for each row of a Kaggle split CSV."""
    with tf.io.gfile.GFile(csv_path, "r") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{csv_path} has no {sorted(missing)} column(s) (columns: {reader.fieldnames}); "
                "expected the Kaggle CSV header ',original_path,id,label,label_str,path'."
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                label = schema.label_from_kaggle_csv(row["label"])
            except ValueError as error:
                raise ValueError(f"{csv_path}, line {line}: {error}") from error
            rows.append((row["path"].strip().lstrip("/"), label))
    return rows


def list_sources(layout: Layout) -> list[SourceFile]:
    """Every input of every split, sorted by id, each with its label and any problem.

    Raises:
        ValueError: the layout has no image folder (extract the zip first).
    """
    if layout.image_root is None:
        raise ValueError(f"{layout.manual_dir} holds only {layout.zip_path}; extract it first.")
    sources: list[SourceFile] = []
    splits = sorted(set(layout.split_folders) | set(layout.csvs), key=schema.SPLITS.index)
    for split in splits:
        folder = layout.split_folders.get(split, schema.KAGGLE_SPLIT_FOLDERS[split])
        on_disk = _files_on_disk(layout.image_root, folder) if split in layout.split_folders else {}
        if split not in layout.csvs:
            sources.extend(
                SourceFile(
                    id=rel, path=paths.join(layout.image_root, rel), split=split, label=label
                )
                for rel, label in on_disk.items()
            )
            logging.info("Split %s: %d files from folder %s (no CSV).", split, len(on_disk), folder)
            continue
        listed = _read_csv(layout.csvs[split])
        seen = set()
        for rel, label in listed:
            if rel in seen:
                continue  # A repeated CSV row is the same input, not a second one.
            seen.add(rel)
            problem = ""
            if rel not in on_disk:
                problem = MISSING_FILE
            elif on_disk[rel] != label:
                problem = LABEL_CONFLICT
            sources.append(
                SourceFile(
                    id=rel,
                    path=paths.join(layout.image_root, rel),
                    split=split,
                    label=label,
                    problem=problem,
                )
            )
        unlisted = sorted(set(on_disk) - seen)
        sources.extend(
            SourceFile(
                id=rel,
                path=paths.join(layout.image_root, rel),
                split=split,
                label=on_disk[rel],
                problem=NOT_IN_CSV,
            )
            for rel in unlisted
        )
        logging.info(
            "Split %s: %d rows in %s, %d files in folder %s, %d listed but missing, "
            "%d on disk but not listed.",
            split,
            len(seen),
            layout.csvs[split],
            len(on_disk),
            folder,
            len(seen - set(on_disk)),
            len(unlisted),
        )
    ids = [source.id for source in sources]
    if len(ids) != len(set(ids)):
        raise ValueError("Two inputs share an id; a CSV path points into another split's folder.")
    return sorted(sources)


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
