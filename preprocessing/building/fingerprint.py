"""What a dataset was built from: its input fingerprint, recorded beside the dataset.

A prepared TFDS folder says nothing about its inputs: without a record, a second
build into the same `--data_dir` from another `--manual_dir` would return the
first dataset as if it were the second. So each build leaves two files in its
version folder:

- `build_fingerprint.json`: the builder (name/config:version), the options that
  change the content, the `manual_dir` given, the number of inputs and two
  digests: `listing_sha256` over every input's (id, split, label, problem, size,
  CRC32C when the listing gives it) and `content_sha256` over the SHA-256 of the
  bytes read (from the build's ledger);
- `build_inputs.jsonl.gz`: the same, one input per line, so that a refusal can
  say *which* inputs differ.

Before reusing a dataset the builder compares the current listing with the
record: same listing and options -> reuse (even from another folder holding the
same files); anything else -> refuse, naming the difference, unless the user
asked to rebuild. The pre-build check compares listings (names, labels, sizes;
CRC32C on gs://), which costs no read of the images; a same-size edit of a local
file is caught only by `content_sha256`, i.e. after a rebuild.

Nothing here knows about images or TFDS: any builder whose inputs are
`inputs.SourceFile`s (the video builder too) can record and check them.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json

import tensorflow as tf

from preprocessing import paths

FINGERPRINT_FILENAME = "build_fingerprint.json"
INPUTS_FILENAME = "build_inputs.jsonl.gz"
FORMAT = 1
_LISTING_FIELDS = ("id", "split", "label", "problem", "size", "crc32c")
_EXAMPLES = 3


class InputsChangedError(ValueError):
    """The dataset on disk was built from other inputs or options than this build's."""


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """The record of one build's inputs (see the module docstring)."""

    builder: str
    options: dict
    manual_dir: str
    count: int
    listing_sha256: str
    content_sha256: str = ""
    format: int = FORMAT


def listing_entries(source_files) -> list[dict]:
    """One dict per input with the listing fields, sorted by id."""
    return sorted(
        ({field: getattr(s, field) for field in _LISTING_FIELDS} for s in source_files),
        key=lambda entry: entry["id"],
    )


def _digest(lines) -> str:
    digest = hashlib.sha256()
    for line in lines:
        digest.update(json.dumps(line, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def make(source_files, *, builder: str, options: dict, manual_dir: str) -> Fingerprint:
    """The fingerprint of a listing, before anything is read."""
    entries = listing_entries(source_files)
    return Fingerprint(
        builder=builder,
        options=dict(sorted(options.items())),
        manual_dir=manual_dir,
        count=len(entries),
        listing_sha256=_digest(entries),
    )


def content_digest(content: dict[str, str]) -> str:
    """Digest of {input id: SHA-256 of its bytes} ('' for inputs never read)."""
    return _digest([[key, content[key]] for key in sorted(content)])


def write(folder: str, fingerprint: Fingerprint, source_files, content: dict[str, str]) -> None:
    """Writes both files into `folder` (the version folder being built)."""
    fingerprint = dataclasses.replace(fingerprint, content_sha256=content_digest(content))
    with tf.io.gfile.GFile(paths.join(folder, FINGERPRINT_FILENAME), "w") as f:
        f.write(json.dumps(dataclasses.asdict(fingerprint), indent=2, sort_keys=True))
    lines = "".join(
        json.dumps({**entry, "sha256": content.get(entry["id"], "")}, sort_keys=True) + "\n"
        for entry in listing_entries(source_files)
    )
    with tf.io.gfile.GFile(paths.join(folder, INPUTS_FILENAME), "wb") as f:
        f.write(gzip.compress(lines.encode(), mtime=0))


def read(folder: str) -> tuple[Fingerprint, list[dict]] | None:
    """(fingerprint, per-input entries) recorded in `folder`; None when there is none."""
    path = paths.join(folder, FINGERPRINT_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        fingerprint = Fingerprint(**json.load(f))
    entries = []
    inputs_path = paths.join(folder, INPUTS_FILENAME)
    if tf.io.gfile.exists(inputs_path):
        with tf.io.gfile.GFile(inputs_path, "rb") as f:
            text = gzip.decompress(f.read()).decode()
        entries = [json.loads(line) for line in text.splitlines() if line]
    return fingerprint, entries


def _examples(ids) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:_EXAMPLES])
    return f"{shown}, ..." if len(ids) > _EXAMPLES else shown


def differences(
    recorded: Fingerprint, recorded_entries: list[dict], current: Fingerprint, source_files
) -> list[str]:
    """What differs between a recorded build and the current inputs; [] when the same.

    The manual_dir itself is not compared: the same files copied elsewhere give the
    same dataset.
    """
    found = []
    if recorded.builder != current.builder:
        found.append(f"builder {recorded.builder} then, {current.builder} now")
    for key in sorted(set(recorded.options) | set(current.options)):
        before, now = recorded.options.get(key), current.options.get(key)
        if before != now:
            found.append(f"option {key}={before!r} then, {now!r} now")
    if recorded.listing_sha256 == current.listing_sha256:
        return found
    before = {entry["id"]: entry for entry in recorded_entries}
    now = {entry["id"]: entry for entry in listing_entries(source_files)}
    added, removed = set(now) - set(before), set(before) - set(now)
    changed = {
        key: [f for f in _LISTING_FIELDS if before[key].get(f) != now[key].get(f)]
        for key in set(now) & set(before)
    }
    changed = {key: fields for key, fields in changed.items() if fields}
    found.append(f"{recorded.count} inputs then, {current.count} now")
    if added:
        found.append(f"{len(added)} new ({_examples(added)})")
    if removed:
        found.append(f"{len(removed)} gone ({_examples(removed)})")
    for field in _LISTING_FIELDS[1:]:
        keys = [key for key, fields in changed.items() if field in fields]
        if keys:
            found.append(f"{len(keys)} with another {field} ({_examples(keys)})")
    if not recorded_entries:
        found.append("the per-input record is missing, so which inputs differ is unknown")
    return found


def check(folder: str, current: Fingerprint, source_files) -> tuple[str, list[str]]:
    """Compares the record in `folder` with the current inputs.

    Returns:
        ("same", []), ("unrecorded", []) for a dataset built before fingerprints
        existed, or ("different", [what differs, ...]).
    """
    recorded = read(folder)
    if recorded is None:
        return "unrecorded", []
    found = differences(recorded[0], recorded[1], current, source_files)
    if found and recorded[0].manual_dir != current.manual_dir:
        found.insert(0, f"built from {recorded[0].manual_dir}, now {current.manual_dir}")
    return ("different", found) if found else ("same", [])


def changed_error(folder: str, found: list[str]) -> InputsChangedError:
    """The refusal to reuse `folder`, saying what differs and what to do."""
    return InputsChangedError(
        f"{folder} was built from other inputs or options: {'; '.join(found)}. Fix: pass "
        "--overwrite to rebuild it (the current dataset stays readable until the new one is "
        "complete), or choose another --data_dir."
    )
