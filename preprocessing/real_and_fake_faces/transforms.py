"""The Beam steps that turn listed inputs into keyed TFDS examples and a ledger.

  SourceFile ──► ReadAndValidate ─good─► ToExample ─────────(DropRejectedCopies)──► examples
         │                │         └─► Fingerprint ─► GroupBySha256 ─► ResolveDuplicates
         │                └─bad──► RejectInvalid ──┐                          │
         └─(listing problem)──► RejectListed ──────┴─────── ledger ◄──────────┘
                                                                one JSON record per input

Every input ends as exactly one ledger record, "written" or "rejected" with a
reason, which is how "inputs read = examples written + rejects" holds by
construction and is checked by the tests. The builder writes the ledger next
to the dataset, and `preprocessing.building.summary` turns it into rejects.jsonl and the
summary table.

Leakage: inputs with the same SHA-256 of stored bytes are grouped; the first
by (split order, id) is the original, so the outcome does not depend on which
worker saw what first. A copy in another split is "leakage": kept and reported,
or rejected as `duplicate_across_splits` with `duplicates="drop"`. A copy in
the same split is kept and reported. The same bytes under both labels (in one
split or two) are rejected, every copy, as `same_bytes_two_labels`: neither
label can be trusted.

Nothing here reads FLAGS or knows about TFDS beyond the example dict, so the
steps are reusable (e.g. by a Dataflow template) and testable with TestPipeline.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import posixpath
import stat

import apache_beam as beam
from apache_beam.metrics import Metrics
import tensorflow as tf

from preprocessing import schema
from preprocessing.building import inputs, ledger
from preprocessing.media import images
from preprocessing.real_and_fake_faces import sources as sources_lib

METRICS_NAMESPACE = "real_and_fake_faces"
DUPLICATE_MODES = ("keep", "drop")


@dataclasses.dataclass(frozen=True)
class ValidImage:
    """An input that decoded, with the bytes to store and the hash of the bytes read."""

    source: inputs.SourceFile
    image: images.StoredImage
    source_sha256: str = ""


def _read_local(path: str, max_bytes: int = images.DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The bytes of a local regular file; anything else is rejected without being read.

    Opened non-blocking and checked with fstat on the open descriptor, so a file
    replaced by a named pipe after listing cannot hang the worker; a file above
    `max_bytes` is rejected from its size, unread (`images.FileTooLargeError`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError as error:
        raise images.MissingFileError(f"{path} vanished after listing") from error
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):
            raise images.NotARegularFileError(f"{path} cannot be opened as a file") from error
        raise
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(f.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise images.NotARegularFileError(
                f"{path} is not a regular file (a named pipe, socket or device)"
            )
        images.check_file_size(status.st_size, max_bytes, path)
        return images.read_at_most(f, max_bytes, path)


def read_and_validate(
    source: inputs.SourceFile, max_file_bytes: int = images.DEFAULT_MAX_FILE_BYTES
) -> ValidImage:
    """Reads one file (local or gs://) of at most `max_file_bytes` and normalises it.

    Raises:
        images.InvalidImageError (a subclass naming the reason): the input cannot
        become an example. I/O errors other than "not found" propagate, so the
        runner retries them instead of silently rejecting a readable file.
    """
    if "://" not in source.path:
        data = _read_local(source.path, max_file_bytes)
    else:
        try:
            data = images.read_bounded(source.path, max_file_bytes)
        except tf.errors.NotFoundError as error:
            raise images.MissingFileError(f"{source.path} vanished after listing") from error
    return ValidImage(
        source=source,
        image=images.normalise(data),
        source_sha256=hashlib.sha256(data).hexdigest(),
    )


def _reject_invalid(failure) -> dict:
    """Turns with_exception_handling's `(input, (exc_type, repr, traceback))` into a record."""
    source, (exc_type, exc_repr, _) = failure
    reason = getattr(exc_type, "reason", images.InvalidImageError.reason)
    Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc()
    return ledger.ledger_record(source, ledger.REJECTED, reason=reason, detail=exc_repr)


def _reject_listed(source: inputs.SourceFile) -> dict:
    """A reject found while listing (missing, not in the CSV, a link or pipe, ...)."""
    Metrics.counter(METRICS_NAMESPACE, f"rejected_{source.problem}").inc()
    detail = sources_lib.PROBLEM_DETAILS.get(source.problem, "")
    if source.note:
        detail = f"{detail} ({source.note})" if detail else source.note
    return ledger.ledger_record(source, ledger.REJECTED, reason=source.problem, detail=detail)


def _fingerprint(valid: ValidImage):
    """(sha256, (source, conversion, source_sha256)): what duplicate detection needs."""
    return valid.image.sha256, (valid.source, valid.image.conversion, valid.source_sha256)


def _to_example(valid: ValidImage):
    """(split, id, example dict) in the features of `schema.features()`."""
    source, image = valid.source, valid.image
    return (
        source.split,
        source.id,
        {
            schema.IMAGE: image.jpeg,
            schema.LABEL: source.label,
            schema.ID: source.id,
            schema.FILENAME: posixpath.basename(source.id),
            schema.SHA256: image.sha256,
        },
    )


class ResolveDuplicatesFn(beam.DoFn):
    """Decides the outcome of every member of one SHA-256 group.

    Main output: one ledger record per member. Tagged output "dropped":
    (id, sha256) of the leaked copies to leave out, with duplicates="drop".
    """

    def __init__(self, duplicates: str):
        if duplicates not in DUPLICATE_MODES:
            raise ValueError(f"duplicates={duplicates!r} is not one of {list(DUPLICATE_MODES)}.")
        self._drop = duplicates == "drop"

    def process(self, element):
        sha256, members = element
        members = sorted(members, key=lambda m: (schema.SPLITS.index(m[0].split), m[0].id))
        conflict = ledger.label_conflict([member[0] for member in members])
        if conflict:
            yield from _reject_label_conflict(sha256, members, conflict)
            return
        first = members[0][0]
        for index, (source, conversion, source_sha256) in enumerate(members):
            duplicate = ""
            if index:
                duplicate = (
                    ledger.DUPLICATE_WITHIN_SPLIT
                    if source.split == first.split
                    else ledger.DUPLICATE_ACROSS_SPLITS
                )
                Metrics.counter(METRICS_NAMESPACE, duplicate).inc()
            duplicate_of = first.id if index else ""
            if duplicate == ledger.DUPLICATE_ACROSS_SPLITS and self._drop:
                Metrics.counter(
                    METRICS_NAMESPACE, f"rejected_{ledger.DUPLICATE_ACROSS_SPLITS}"
                ).inc()
                yield beam.pvalue.TaggedOutput("dropped", (source.id, sha256))
                yield ledger.ledger_record(
                    source,
                    ledger.REJECTED,
                    reason=ledger.DUPLICATE_ACROSS_SPLITS,
                    detail=f"same bytes as {first.id} ({first.split})",
                    sha256=sha256,
                    conversion=conversion,
                    duplicate=duplicate,
                    duplicate_of=duplicate_of,
                    source_sha256=source_sha256,
                )
                continue
            Metrics.counter(METRICS_NAMESPACE, f"written_{source.split}").inc()
            if conversion:
                Metrics.counter(METRICS_NAMESPACE, "converted").inc()
            yield ledger.ledger_record(
                source,
                ledger.WRITTEN,
                sha256=sha256,
                conversion=conversion,
                duplicate=duplicate,
                duplicate_of=duplicate_of,
                source_sha256=source_sha256,
            )


def _reject_label_conflict(sha256: str, members, conflict: str):
    """Every member of a group found under both labels: a reject, and left out."""
    for source, conversion, source_sha256 in members:
        Metrics.counter(METRICS_NAMESPACE, f"rejected_{ledger.SAME_BYTES_TWO_LABELS}").inc()
        yield beam.pvalue.TaggedOutput("dropped", (source.id, sha256))
        yield ledger.ledger_record(
            source,
            ledger.REJECTED,
            reason=ledger.SAME_BYTES_TWO_LABELS,
            detail=conflict,
            sha256=sha256,
            conversion=conversion,
            source_sha256=source_sha256,
        )


class BuildExamples(beam.PTransform):
    """Listed inputs -> (examples, ledger), see the module docstring.

    Applied to a PCollection of `inputs.SourceFile` (from `ReadSourceList`, or
    `beam.Create` in tests). Outputs a dict:
        "examples": (split, id, example dict) for every written input;
        "ledger": one dict per input (see `ledger_record`).

    Only the small fingerprints are grouped by SHA-256. The examples wait for
    the list of copies to leave out (a side input: leaked copies with
    duplicates="drop", and copies of one content found under both labels,
    `ledger.SAME_BYTES_TWO_LABELS`), which costs one extra pass over the bytes.
    """

    def __init__(
        self, duplicates: str = "keep", max_file_bytes: int = images.DEFAULT_MAX_FILE_BYTES
    ):
        super().__init__()
        if duplicates not in DUPLICATE_MODES:
            raise ValueError(f"duplicates={duplicates!r} is not one of {list(DUPLICATE_MODES)}.")
        self._duplicates = duplicates
        self._max_file_bytes = max_file_bytes

    def expand(self, listed):
        readable, unreadable = listed | "SplitListingProblems" >> beam.Partition(
            lambda source, _: 1 if source.problem else 0, 2
        )
        good, bad = readable | "ReadAndValidate" >> beam.Map(
            read_and_validate, max_file_bytes=self._max_file_bytes
        ).with_exception_handling(exc_class=images.InvalidImageError)
        resolved = (
            good
            | "Fingerprint" >> beam.Map(_fingerprint)
            | "GroupBySha256" >> beam.GroupByKey()
            | "ResolveDuplicates"
            >> beam.ParDo(ResolveDuplicatesFn(self._duplicates)).with_outputs(
                "dropped", main="ledger"
            )
        )
        # The examples wait for the list of copies to leave out (leaked copies with
        # duplicates="drop", and always the copies found under both labels).
        examples = (
            good
            | "ToExample" >> beam.Map(_to_example)
            | "DropRejectedCopies"
            >> beam.Filter(
                lambda example, dropped: example[1] not in dropped,
                dropped=beam.pvalue.AsDict(resolved.dropped),
            )
        )
        ledger = (
            resolved.ledger,
            bad | "RejectInvalid" >> beam.Map(_reject_invalid),
            unreadable | "RejectListed" >> beam.Map(_reject_listed),
        ) | "MergeLedger" >> beam.Flatten()
        return {"examples": examples, "ledger": ledger}
