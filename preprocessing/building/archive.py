"""Extracts a zip of inputs (the Kaggle download) safely: capped, streamed, all or nothing.

A zip is a promise about sizes that only its content keeps: a 1 MiB zip can hold a
1 GiB entry. So extraction

- refuses, before writing anything, an archive whose entries declare more than
  `max_bytes` in total, and stops when the bytes actually written pass it (the
  declared sizes can lie);
- streams each entry in 1 MiB blocks: memory stays flat whatever the entry's size;
- writes only regular files under the destination: absolute names, `..` parts and
  symbolic-link entries are skipped and counted, never followed;
- extracts into `<destination>.incomplete-<random>` and renames it into place when
  complete, with a `.extracted.json` record of what the zip was, so a half-written
  extraction is never taken for a complete one and a complete one is reused. The
  partial output of a failed or killed extraction is removed (at once, or by the
  next extraction into the same destination; two builds extracting the same zip
  at the same moment are not supported).

The extracted copy stays after the build (a rebuild, another config, or the
fingerprint check of a later run reuse it instead of extracting again); the
build says where it is and how big it is. Deleting it is safe: the next build
extracts again.

Works for local paths and gs:// (through tf.io.gfile); pure Python otherwise,
nothing here knows about images or TFDS.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import stat
import uuid
import zipfile

from absl import logging
import tensorflow as tf

from preprocessing import cli, paths

GB = 1_000_000_000
# About four times the Kaggle "140k Real and Fake Faces" download: room for a real
# dataset, not for a zip bomb. `--max_extract_gb` changes it.
DEFAULT_MAX_EXTRACT_GB = 16.0
RECORD_FILENAME = ".extracted.json"
INCOMPLETE_INFIX = ".incomplete-"
_BLOCK = 1 << 20


class ArchiveTooLargeError(ValueError):
    """The archive holds (or declares) more bytes than the extraction cap."""


@dataclasses.dataclass(frozen=True)
class Extraction:
    """Where a zip was extracted and what that holds.

    Attributes:
        folder: the extracted copy (local or gs://).
        files: regular files written.
        bytes: their total size.
        reused: True when an earlier complete extraction was found and used.
        skipped: entries not extracted (unsafe names, links), with the reason.
    """

    folder: str
    files: int
    bytes: int
    reused: bool
    skipped: tuple[str, ...] = ()


def format_size(n_bytes: int) -> str:
    """Bytes for people: "1.23 GB", "4.2 MB", "812 kB", "96 bytes" (powers of 1000, as GB).

    Small sizes keep their own unit, so that a cap of `--max_extract_gb=0.001` and a
    zip that declares 1.2 MB do not both read "0.00 GB".
    """
    for unit, size in (("GB", GB), ("MB", GB // 1000), ("kB", GB // 1_000_000)):
        if n_bytes >= size:
            return f"{n_bytes / size:.2f} GB" if unit == "GB" else f"{n_bytes / size:.1f} {unit}"
    return f"{n_bytes} bytes"


def destination_for(zip_path: str, extract_root: str) -> str:
    """`<extract_root>/<zip name>-<size>`: a new download of another size gets its own folder."""
    size = tf.io.gfile.stat(zip_path).length
    name = posixpath.basename(zip_path.rstrip("/"))
    stem = name[: -len(".zip")] if name.lower().endswith(".zip") else name
    return paths.join(extract_root, f"{stem}-{size}")


def _identity(zip_path: str) -> dict:
    """What makes two zips the same for reuse: their entries, not their path or time stamp.

    A digest of every entry's name, CRC-32 and size, read from the zip's central
    directory (its last few kB, not the 4 GB of data): a copy of the same download
    at another path, or with a new mtime, reuses the extraction; a zip with any
    other content (same size or not) is extracted again.
    """
    try:
        with tf.io.gfile.GFile(zip_path, "rb") as raw, zipfile.ZipFile(raw) as archive:
            digest = hashlib.sha256()
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                digest.update(f"{info.filename}\0{info.CRC:08x}\0{info.file_size}\n".encode())
    except (zipfile.BadZipFile, tf.errors.OpError, OSError) as error:
        raise ValueError(f"{zip_path} is not a readable zip file ({error}).") from error
    return {"entries_sha256": digest.hexdigest(), "size": tf.io.gfile.stat(zip_path).length}


def _safe_name(name: str) -> str | None:
    """The entry's relative path, or None when it would land outside the destination."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_free_space(folder: str, needed: int) -> None:
    """Local disks only: fail before extracting when the bytes cannot fit."""
    if "://" in folder:
        return
    import shutil  # pylint: disable=import-outside-toplevel

    tf.io.gfile.makedirs(folder)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise cli.UserError(
            f"Extracting needs {format_size(needed)} but {folder} has {format_size(free)} free. "
            "Fix: free space there, point --data_dir at a bigger disk, or extract the zip "
            "yourself and pass the folder as --manual_dir."
        )


def extract(zip_path: str, destination: str, *, max_bytes: int) -> Extraction:
    """Extracts `zip_path` into `destination`, or reuses a complete earlier extraction.

    Args:
        zip_path: the zip (local or gs://).
        destination: the folder to create (see `destination_for`).
        max_bytes: cap on the uncompressed bytes, declared and actually written.

    Returns:
        What was extracted.

    Raises:
        ArchiveTooLargeError: the cap was exceeded (nothing is left behind).
        ValueError: the file is not a zip.
        cli.UserError: not enough free space on a local disk.
    """
    identity = _identity(zip_path)
    earlier = _earlier_extraction(destination, identity, zip_path)
    if earlier is not None:
        return earlier
    _remove_incomplete(destination)
    staging = f"{destination}{INCOMPLETE_INFIX}{uuid.uuid4().hex[:8]}"
    try:
        files, written, skipped = _extract_to_staging(zip_path, staging, destination, max_bytes)
        record = {**identity, "zip": zip_path, "files": files, "bytes": written, "skipped": skipped}
        with tf.io.gfile.GFile(paths.join(staging, RECORD_FILENAME), "w") as f:
            json.dump(record, f, indent=1)
        tf.io.gfile.rename(staging, destination, overwrite=False)
    except BaseException:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
        raise
    for line in skipped[:5]:
        logging.warning("Not extracted from %s: %s", zip_path, line)
    return Extraction(destination, files, written, False, tuple(skipped))


def _earlier_extraction(destination: str, identity: dict, zip_path: str) -> Extraction | None:
    """The complete extraction of the same zip at `destination`, if there is one.

    One of another zip is removed (and None returned): the caller extracts again.
    """
    record_path = paths.join(destination, RECORD_FILENAME)
    if not tf.io.gfile.exists(record_path):
        return None
    with tf.io.gfile.GFile(record_path) as f:
        record = json.load(f)
    if {k: record.get(k) for k in identity} == identity:
        return Extraction(
            destination, record["files"], record["bytes"], True, tuple(record["skipped"])
        )
    logging.info(
        "%s was extracted from a zip with other contents (%s); extracting %s again.",
        destination,
        record.get("zip", "unknown"),
        zip_path,
    )
    tf.io.gfile.rmtree(destination)
    return None


def _extract_to_staging(zip_path: str, staging: str, destination: str, max_bytes: int):
    """Checks the declared size and the free space, then extracts; (files, bytes, skipped)."""
    with tf.io.gfile.GFile(zip_path, "rb") as raw:
        try:
            archive = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, tf.errors.OpError, OSError) as error:
            raise ValueError(f"{zip_path} is not a readable zip file ({error}).") from error
        with archive:
            entries = [i for i in archive.infolist() if not i.is_dir()]
            declared = sum(i.file_size for i in entries)
            if declared > max_bytes:
                raise ArchiveTooLargeError(
                    f"{zip_path} declares {format_size(declared)} ({declared:,} bytes) "
                    f"uncompressed, more than --max_extract_gb={max_bytes / GB:g} "
                    f"({max_bytes:,} bytes); nothing was extracted. Fix: if "
                    "this is the dataset you expect, raise --max_extract_gb; a small zip "
                    "that expands this much is probably not a dataset of images."
                )
            _check_free_space(posixpath.dirname(destination.rstrip("/")), declared)
            logging.info(
                "Extracting %s (%d files, %s uncompressed) to %s.",
                zip_path,
                len(entries),
                format_size(declared),
                destination,
            )
            return _extract_entries(archive, entries, staging, max_bytes, zip_path)


def _extract_entries(archive, entries, staging: str, max_bytes: int, zip_path: str):
    """Streams every safe regular-file entry into `staging`; returns (files, bytes, skipped)."""
    files = written = 0
    skipped = []
    made = set()
    for info in entries:
        relative = _safe_name(info.filename)
        if relative is None:
            skipped.append(f"{info.filename!r}: its name leads outside the extraction folder")
            continue
        if _is_link(info):
            skipped.append(f"{info.filename!r}: a symbolic link, not a file")
            continue
        target = paths.join(staging, *relative.split("/"))
        parent = posixpath.dirname(target)
        if parent not in made:
            tf.io.gfile.makedirs(parent)
            made.add(parent)
        with archive.open(info) as source, tf.io.gfile.GFile(target, "wb") as sink:
            while block := source.read(_BLOCK):
                written += len(block)
                if written > max_bytes:
                    raise ArchiveTooLargeError(
                        f"{zip_path} expands to more than "
                        f"--max_extract_gb={max_bytes / GB:g} (its entries declared less); "
                        "extraction stopped and its partial output was removed. Fix: raise "
                        "--max_extract_gb only if you trust this archive."
                    )
                sink.write(block)
        files += 1
    return files, written, skipped


def _remove_incomplete(destination: str) -> None:
    """Removes what killed extractions into `destination` left behind."""
    for leftover in tf.io.gfile.glob(f"{destination}{INCOMPLETE_INFIX}*"):
        logging.info("Removing %s: an extraction that did not finish.", leftover)
        tf.io.gfile.rmtree(leftover)
