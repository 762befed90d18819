"""Finds the input images under `manual_dir` and decides each one's split and label.

Accepted layouts (local paths or gs:// URLs, everything through tf.io.gfile):

- the extracted Kaggle "140k Real and Fake Faces" download:
  `real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/*.jpg` plus
  `train.csv`, `valid.csv`, `test.csv` beside `real_vs_fake/`;
- the Kaggle zip itself, as `manual_dir` or inside it (the builder extracts it with
  `preprocessing.building.archive`, then calls `find_layout` on the extracted folder);
- any `<split>/{real,fake}/` tree, split being `train`, `valid`/`validation`, `test`.

When a split has its CSV, the CSV is the list of inputs and the source of the
label (converted from Kaggle's 1 = real by `schema.label_from_kaggle_csv`, the
only place that does it); the folders are reconciled with it, and every
mismatch becomes an input with a `problem`, which the Beam job reports as a
reject instead of dropping it silently. Without a CSV the folders decide.

Only regular files are inputs. On local disks each entry is looked at without
opening it: a named pipe, socket or device is rejected (`not_a_regular_file`;
reading a FIFO would hang the job), a symbolic link that leads out of
`manual_dir` is rejected (`link_outside_input`) unless allowed, a dangling or
looping link is rejected (`broken_link`), and a link to a file that is already
an input is rejected as `linked_copy`, so no file is read twice. Sizes are
recorded for the input fingerprint (`preprocessing.building.fingerprint`); on gs:// the
listing comes from google-cloud-storage, one request per folder page, with sizes
and CRC32C.

This is plain Python run once by the launcher: listing is a handful of
directory calls even for 140k files, and doing it up front lets the job fail
in seconds on a wrong `--manual_dir`.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import os

from absl import logging
import tensorflow as tf

from preprocessing import paths, schema
from preprocessing.building import inputs

# Where the Kaggle download keeps its split folders, relative to manual_dir.
KAGGLE_IMAGE_ROOTS = ("real_vs_fake/real-vs-fake", "real-vs-fake", "real_vs_fake")
NOT_IN_CSV = "not_in_csv"  # On disk, not in the CSV.
CONFLICTING_CSV_ROWS = "conflicting_csv_rows"  # The CSV lists the file twice, with both labels.
# What each problem means, for rejects.jsonl (inputs.SourceFile.note adds the specifics): the
# generic ones of every build (`inputs.PROBLEM_DETAILS`), worded for the Kaggle CSVs.
PROBLEM_DETAILS = {
    **inputs.PROBLEM_DETAILS,
    inputs.MISSING_FILE: "listed in the split CSV but not on disk",
    NOT_IN_CSV: "on disk but not listed in the split CSV",
    inputs.LABEL_CONFLICT: "the CSV label disagrees with the class folder",
    CONFLICTING_CSV_ROWS: "the split CSV lists this file twice, once as real and once as fake",
}


@dataclasses.dataclass(frozen=True)
class Layout:
    """What `find_layout` found under manual_dir.

    Attributes:
        manual_dir: as given.
        image_root: folder holding the split folders; None when only a zip was found.
        split_folders: TFDS split name -> folder name under image_root ("valid", ...).
        csvs: TFDS split name -> CSV path, for the splits that have one.
        zip_path: the Kaggle zip, when there is no extracted folder (or when
            manual_dir is the zip itself).
        unused_zips: zips in manual_dir left aside because an extracted
            folder was found (reported, so that nobody wonders which was read).
    """

    manual_dir: str
    image_root: str | None
    split_folders: dict[str, str]
    csvs: dict[str, str]
    zip_path: str | None = None
    unused_zips: tuple[str, ...] = ()


def find_layout(manual_dir: str) -> Layout:
    """Locates the image folders, the split CSVs and, failing those, a zip.

    `manual_dir` may also be the Kaggle zip itself.

    Raises:
        FileNotFoundError: manual_dir does not exist.
        ValueError: nothing under manual_dir looks like the dataset; the message
            lists what was expected.
    """
    _check_manual_dir_exists(manual_dir)
    if not inputs.is_dir(manual_dir):
        return _layout_of_zip_file(manual_dir)
    image_root, csv_home, found_splits = _find_image_root(manual_dir)
    csvs = _find_split_csvs([manual_dir, csv_home, image_root or manual_dir])
    zips = sorted(tf.io.gfile.glob(paths.join(manual_dir, "*.zip")))
    return Layout(
        manual_dir=manual_dir,
        image_root=image_root,
        split_folders=found_splits,
        csvs=csvs,
        zip_path=_the_only_zip(manual_dir, zips) if image_root is None else None,
        unused_zips=tuple(zips) if image_root is not None else (),
    )


def _check_manual_dir_exists(manual_dir: str) -> None:
    """Raises on a mistyped gs:// URL or a missing manual_dir, saying what to pass instead."""
    if paths.looks_like_gcs_typo(manual_dir):
        raise ValueError(
            f"--manual_dir={manual_dir} is not a valid Cloud Storage URL: write gs://BUCKET/PATH."
        )
    if not tf.io.gfile.exists(manual_dir):
        raise FileNotFoundError(
            f"--manual_dir={manual_dir} does not exist. Fix: point it at the extracted Kaggle "
            "'140k Real and Fake Faces' folder (the one holding real_vs_fake/ and train.csv), "
            "at the Kaggle zip (or its folder), or at a <split>/{real,fake}/ tree."
        )


def _layout_of_zip_file(manual_dir: str) -> Layout:
    """The layout when manual_dir is a file: the Kaggle zip itself, or an error."""
    if manual_dir.lower().endswith(".zip"):
        return Layout(
            manual_dir=manual_dir,
            image_root=None,
            split_folders={},
            csvs={},
            zip_path=manual_dir,
        )
    raise ValueError(
        f"--manual_dir={manual_dir} is a file, not a folder or a .zip. Fix: pass the "
        "Kaggle zip, the folder it was extracted to, or a <split>/{real,fake}/ tree."
    )


def _find_image_root(manual_dir: str) -> tuple[str | None, str, dict[str, str]]:
    """(image root, folder its Kaggle CSVs would be in, split folders), or (None, manual_dir, {}).

    Looks at manual_dir, the Kaggle roots under it, and the same one level down
    (e.g. manual_dir/my_copy/real_vs_fake/...); the first with split folders wins.
    """
    # (image root candidate, the folder its Kaggle CSVs would be in).
    candidates = [(manual_dir, manual_dir)]
    candidates += [(paths.join(manual_dir, sub), manual_dir) for sub in KAGGLE_IMAGE_ROOTS]
    for child in paths.listdir(manual_dir):
        child_dir = paths.join(manual_dir, child)
        if inputs.is_dir(child_dir):
            candidates.append((child_dir, child_dir))
            candidates.extend((paths.join(child_dir, sub), child_dir) for sub in KAGGLE_IMAGE_ROOTS)
    for candidate, home in candidates:
        found_splits = inputs.split_folders(candidate)
        if found_splits:
            return candidate, home, found_splits
    return None, manual_dir, {}


def _find_split_csvs(folders: list[str]) -> dict[str, str]:
    """TFDS split -> the first `<kaggle split name>.csv` found in `folders`, in order."""
    csvs: dict[str, str] = {}
    for folder in dict.fromkeys(folders):
        for kaggle_name in ("train", "valid", "validation", "test"):
            path = paths.join(folder, f"{kaggle_name}.csv")
            split = schema.split_from_folder(kaggle_name)
            if split not in csvs and tf.io.gfile.exists(path):
                csvs[split] = path
    return csvs


def _the_only_zip(manual_dir: str, zips: list[str]) -> str:
    """The zip to extract when manual_dir holds no image folders; raises unless exactly one."""
    if len(zips) > 1:
        raise ValueError(
            f"--manual_dir={manual_dir} holds several zips {zips} and no extracted dataset; "
            "pass the Kaggle zip itself as --manual_dir, or extract it."
        )
    if not zips:
        raise ValueError(
            f"--manual_dir={manual_dir} holds no dataset: expected "
            "real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/ (the extracted Kaggle "
            "download), the Kaggle zip, or <split>/{real,fake}/ folders with split in "
            f"{sorted(schema.SPLIT_FOLDERS)}. Found: {paths.listdir(manual_dir)[:20]}."
        )
    return zips[0]


def _entries_on_disk(
    layout: Layout, split_folder: str, root_real: str | None, allow_links_outside: bool
) -> list[inputs.Entry]:
    """Every name in `<split_folder>/{real,fake}/`, classified, sorted by relative path."""
    entries = []
    image_root = layout.image_root
    for class_name, label in inputs.class_folders(image_root, split_folder):
        class_dir = paths.join(image_root, split_folder, class_name)
        prefix = f"{split_folder}/{class_name}/"
        if root_real is not None:  # A local disk.
            folder_via_link = inputs.folder_via_link(class_dir, layout.manual_dir)
            with os.scandir(class_dir) as names:
                for item in sorted(names, key=lambda e: e.name):
                    # Dot files are file-system litter (.DS_Store, ._x.jpg), not inputs.
                    if item.name.startswith("."):
                        continue
                    entry = inputs.local_entry(
                        item.path,
                        prefix + item.name,
                        label,
                        root_real,
                        allow_links_outside,
                        folder_via_link,
                    )
                    if entry is not None:
                        entries.append(entry)
        elif class_dir.startswith("gs://"):
            from preprocessing import gcs  # pylint: disable=import-outside-toplevel

            for name, (size, crc32c) in sorted(gcs.list_folder(class_dir).items()):
                if not name.startswith("."):
                    entries.append(inputs.Entry(prefix + name, label, size=size, crc32c=crc32c))
        else:  # Another tf.io.gfile file system: names only.
            for name in paths.listdir(class_dir):
                if not name.startswith(".") and not inputs.is_dir(paths.join(class_dir, name)):
                    entries.append(inputs.Entry(prefix + name, label))
    return entries


def _read_csv(csv_path: str) -> list[tuple[str, int, int]]:
    """(path relative to the image root, our label id, line number) per row of a split CSV."""
    with tf.io.gfile.GFile(csv_path, "rb") as f:
        raw = f.read()
    # "utf-8-sig": spreadsheet programs save CSVs with a byte-order mark, which would
    # otherwise become part of the first column's name ('\ufeffpath').
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{csv_path} is not UTF-8 text ({error}); expected the Kaggle split CSV."
        ) from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
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
        rows.append(((row["path"] or "").strip().lstrip("/"), label, line))
    return rows


def _source(layout: Layout, entry_or_rel, split: str, label: int, problem: str, note: str = ""):
    entry = entry_or_rel if isinstance(entry_or_rel, inputs.Entry) else None
    relative = entry.relative if entry else entry_or_rel
    return inputs.SourceFile(
        id=relative,
        path=paths.join(layout.image_root, relative),
        split=split,
        label=label,
        problem=problem,
        size=entry.size if entry else -1,
        crc32c=entry.crc32c if entry else "",
        note=note,
    )


def list_sources(layout: Layout, *, allow_links_outside: bool = False) -> list[inputs.SourceFile]:
    """Every input of every split, sorted by id, each with its label and any problem.

    Args:
        layout: what `find_layout` found.
        allow_links_outside: follow symbolic links that lead out of manual_dir
            (local disks); by default they are rejected as inputs.LINK_OUTSIDE.

    Raises:
        ValueError: the layout has no image folder (extract the zip first), or a
            CSV is unreadable.
    """
    if layout.image_root is None:
        raise ValueError(f"{layout.manual_dir} holds only {layout.zip_path}; extract it first.")
    _log_layout(layout)
    splits = sorted(set(layout.split_folders) | set(layout.csvs), key=schema.SPLITS.index)
    folders = {
        split: layout.split_folders.get(split, schema.KAGGLE_SPLIT_FOLDERS[split])
        for split in splits
    }
    on_disk = _scan_split_folders(layout, splits, folders, allow_links_outside)
    sources: list[inputs.SourceFile] = []
    for split in splits:
        if split in layout.csvs:
            sources.extend(_sources_from_csv(layout, split, on_disk[split], folders[split]))
        else:
            sources.extend(_sources_from_folder(layout, split, on_disk[split], folders[split]))
    ids = [source.id for source in sources]
    if len(ids) != len(set(ids)):
        raise ValueError("Two inputs share an id; a CSV path points into another split's folder.")
    return sorted(sources)


def _log_layout(layout: Layout) -> None:
    logging.info(
        "Images from %s (split CSVs: %s)%s.",
        layout.image_root,
        ", ".join(layout.csvs[split] for split in schema.SPLITS if split in layout.csvs) or "none",
        f"; not used: {', '.join(layout.unused_zips)} beside it" if layout.unused_zips else "",
    )


def _scan_split_folders(
    layout: Layout, splits: list[str], folders: dict[str, str], allow_links_outside: bool
) -> dict[str, dict[str, inputs.Entry]]:
    """split -> {relative path: entry} of every file in the split folders, linked copies marked.

    All splits are scanned before any link is judged: a link in one split to a
    file of another is a linked copy too.
    """
    local = "://" not in layout.image_root
    root_real = os.path.realpath(layout.manual_dir) if local else None
    scanned: list[tuple[str, inputs.Entry]] = []
    for split in splits:
        if split in layout.split_folders:
            scanned.extend(
                (split, entry)
                for entry in _entries_on_disk(
                    layout, folders[split], root_real, allow_links_outside
                )
            )
    checked = inputs.mark_linked_copies([entry for _, entry in scanned])
    on_disk: dict[str, dict[str, inputs.Entry]] = {split: {} for split in splits}
    for (split, _), entry in zip(scanned, checked):
        on_disk[split][entry.relative] = entry
    return on_disk


def _sources_from_folder(
    layout: Layout, split: str, files: dict[str, inputs.Entry], folder: str
) -> list[inputs.SourceFile]:
    """A split without a CSV: every file, labelled by its class folder."""
    logging.info("Split %s: %d files from folder %s (no CSV).", split, len(files), folder)
    return [
        _source(layout, entry, split, entry.label, entry.problem, entry.note)
        for entry in files.values()
    ]


def _sources_from_csv(
    layout: Layout, split: str, files: dict[str, inputs.Entry], folder: str
) -> list[inputs.SourceFile]:
    """A split with a CSV: its rows, reconciled with the files on disk, then the unlisted files."""
    csv_path = layout.csvs[split]
    labels, lines = _rows_by_path(csv_path)
    sources = []
    for rel in labels:  # CSV order; the final list is sorted by id.
        entry = files.get(rel)
        label, problem, note = _reconcile_row(csv_path, entry, labels[rel], lines[rel])
        sources.append(_source(layout, entry or rel, split, label, problem, note))
    unlisted = sorted(set(files) - set(labels))
    # A file-level problem (a FIFO, a bad link) says more than "not in the CSV".
    sources.extend(
        _source(
            layout,
            files[rel],
            split,
            files[rel].label,
            files[rel].problem or NOT_IN_CSV,
            files[rel].note,
        )
        for rel in unlisted
    )
    logging.info(
        "Split %s: %d rows in %s, %d files in folder %s, %d listed but missing, "
        "%d on disk but not listed.",
        split,
        len(labels),
        csv_path,
        len(files),
        folder,
        len(set(labels) - set(files)),
        len(unlisted),
    )
    return sources


def _rows_by_path(csv_path: str) -> tuple[dict[str, set[int]], dict[str, list[int]]]:
    """({path: labels}, {path: line numbers}) of a split CSV, in CSV order; warns on repeats."""
    labels: dict[str, set[int]] = collections.defaultdict(set)
    lines: dict[str, list[int]] = collections.defaultdict(list)
    for rel, label, line in _read_csv(csv_path):
        labels[rel].add(label)
        lines[rel].append(line)
    repeated = sum(len(v) > 1 for v in lines.values())
    if repeated:
        logging.warning("%s lists %d file(s) more than once.", csv_path, repeated)
    return labels, lines


def _reconcile_row(
    csv_path: str, entry: inputs.Entry | None, labels: set[int], lines: list[int]
) -> tuple[int, str, str]:
    """(label, problem, note) of one CSV path, given the file found for it (None: not on disk)."""
    if len(labels) > 1:
        label = entry.label if entry else min(labels)
        return label, CONFLICTING_CSV_ROWS, f"{csv_path} lines {', '.join(map(str, lines))}"
    (label,) = labels
    if entry is None:
        return label, inputs.MISSING_FILE, ""
    if entry.problem:
        return label, entry.problem, entry.note
    if entry.label != label:
        return label, inputs.LABEL_CONFLICT, ""
    return label, "", ""
