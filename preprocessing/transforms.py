"""The Beam steps that turn listed inputs into keyed TFDS examples and a ledger.

  SourceFile ──► ReadAndValidate ─good─► ToExample ─────────(DropLeakedCopies)──► examples
         │                │         └─► Fingerprint ─► GroupBySha256 ─► ResolveDuplicates
         │                └─bad──► RejectInvalid ──┐                          │
         └─(listing problem)──► RejectListed ──────┴─────── ledger ◄──────────┘
                                                                one JSON record per input

Every input ends as exactly one ledger record, "written" or "rejected" with a
reason, which is how "inputs read = examples written + rejects" holds by
construction and is checked by the tests. The builder writes the ledger next
to the dataset, and `preprocessing.report` turns it into rejects.jsonl and the
summary table.

Leakage: inputs with the same SHA-256 of stored bytes are grouped; the first
by (split order, id) is the original, so the outcome does not depend on which
worker saw what first. A copy in another split is "leakage": kept and reported,
or rejected as `duplicate_across_splits` with `duplicates="drop"`. A copy in
the same split is kept and reported.

Nothing here reads FLAGS or knows about TFDS beyond the example dict, so the
steps are reusable (e.g. by a Dataflow template) and testable with TestPipeline.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath

import apache_beam as beam
from apache_beam.metrics import Metrics
import tensorflow as tf

from preprocessing import images, schema
from preprocessing import sources as sources_lib

METRICS_NAMESPACE = "real_and_fake_faces"
DUPLICATE_MODES = ("keep", "drop")
WRITTEN = "written"
REJECTED = "rejected"
DUPLICATE_ACROSS_SPLITS = "duplicate_across_splits"
DUPLICATE_WITHIN_SPLIT = "duplicate_within_split"


@dataclasses.dataclass(frozen=True)
class ValidImage:
    """An input that decoded, with the bytes to store."""

    source: sources_lib.SourceFile
    image: images.StoredImage


def ledger_record(
    source: sources_lib.SourceFile,
    outcome: str,
    *,
    reason: str = "",
    detail: str = "",
    sha256: str = "",
    conversion: str = "",
    duplicate: str = "",
    duplicate_of: str = "",
) -> dict:
    """The one JSON-able record each input gets; rejects.jsonl is the `rejected` ones."""
    return {
        "id": source.id,
        "path": source.path,
        "split": source.split,
        "label": schema.LABEL_NAMES[source.label],
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "sha256": sha256,
        "conversion": conversion,
        "duplicate": duplicate,
        "duplicate_of": duplicate_of,
    }


def read_and_validate(source: sources_lib.SourceFile) -> ValidImage:
    """Reads one file (local or gs://) and normalises it.

    Raises:
        images.InvalidImageError (a subclass naming the reason): the input cannot
        become an example. I/O errors other than "not found" propagate, so the
        runner retries them instead of silently rejecting a readable file.
    """
    try:
        with tf.io.gfile.GFile(source.path, "rb") as f:
            data = f.read()
    except tf.errors.NotFoundError as error:
        raise images.MissingFileError(f"{source.path} vanished after listing: {error}") from error
    return ValidImage(source=source, image=images.normalise(data))


def _reject_invalid(failure) -> dict:
    """Turns with_exception_handling's `(input, (exc_type, repr, traceback))` into a record."""
    source, (exc_type, exc_repr, _) = failure
    reason = getattr(exc_type, "reason", images.InvalidImageError.reason)
    Metrics.counter(METRICS_NAMESPACE, f"rejected_{reason}").inc()
    return ledger_record(source, REJECTED, reason=reason, detail=exc_repr)


def _reject_listed(source: sources_lib.SourceFile) -> dict:
    """A reject found while listing (missing on disk, not in the CSV, label conflict)."""
    Metrics.counter(METRICS_NAMESPACE, f"rejected_{source.problem}").inc()
    details = {
        sources_lib.MISSING_FILE: "listed in the split CSV but not on disk",
        sources_lib.NOT_IN_CSV: "on disk but not listed in the split CSV",
        sources_lib.LABEL_CONFLICT: "the CSV label disagrees with the class folder",
    }
    return ledger_record(
        source, REJECTED, reason=source.problem, detail=details.get(source.problem, "")
    )


def _fingerprint(valid: ValidImage):
    """(sha256, (source, conversion)): what duplicate detection needs, without the bytes."""
    return valid.image.sha256, (valid.source, valid.image.conversion)


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
        first = members[0][0]
        for index, (source, conversion) in enumerate(members):
            duplicate = ""
            if index:
                duplicate = (
                    DUPLICATE_WITHIN_SPLIT
                    if source.split == first.split
                    else DUPLICATE_ACROSS_SPLITS
                )
                Metrics.counter(METRICS_NAMESPACE, duplicate).inc()
            duplicate_of = first.id if index else ""
            if duplicate == DUPLICATE_ACROSS_SPLITS and self._drop:
                Metrics.counter(METRICS_NAMESPACE, f"rejected_{DUPLICATE_ACROSS_SPLITS}").inc()
                yield beam.pvalue.TaggedOutput("dropped", (source.id, sha256))
                yield ledger_record(
                    source,
                    REJECTED,
                    reason=DUPLICATE_ACROSS_SPLITS,
                    detail=f"same bytes as {first.id} ({first.split})",
                    sha256=sha256,
                    conversion=conversion,
                    duplicate=duplicate,
                    duplicate_of=duplicate_of,
                )
                continue
            Metrics.counter(METRICS_NAMESPACE, f"written_{source.split}").inc()
            if conversion:
                Metrics.counter(METRICS_NAMESPACE, "converted").inc()
            yield ledger_record(
                source,
                WRITTEN,
                sha256=sha256,
                conversion=conversion,
                duplicate=duplicate,
                duplicate_of=duplicate_of,
            )


class BuildExamples(beam.PTransform):
    """Listed inputs -> (examples, ledger), see the module docstring.

    Applied to a PCollection of `sources.SourceFile` (from `ReadSourceList`, or
    `beam.Create` in tests). Outputs a dict:
        "examples": (split, id, example dict) for every written input;
        "ledger": one dict per input (see `ledger_record`).

    The image bytes go straight from validation to the examples, in the same
    fused stage: only the small fingerprints are grouped by SHA-256. With
    duplicates="drop" the examples wait for the list of leaked copies (a side
    input), which costs one extra pass over the bytes.
    """

    def __init__(self, duplicates: str = "keep"):
        super().__init__()
        if duplicates not in DUPLICATE_MODES:
            raise ValueError(f"duplicates={duplicates!r} is not one of {list(DUPLICATE_MODES)}.")
        self._duplicates = duplicates

    def expand(self, listed):
        readable, unreadable = listed | "SplitListingProblems" >> beam.Partition(
            lambda source, _: 1 if source.problem else 0, 2
        )
        good, bad = readable | "ReadAndValidate" >> beam.Map(
            read_and_validate
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
        examples = good | "ToExample" >> beam.Map(_to_example)
        if self._duplicates == "drop":
            examples = examples | "DropLeakedCopies" >> beam.Filter(
                lambda example, dropped: example[1] not in dropped,
                dropped=beam.pvalue.AsDict(resolved.dropped),
            )
        ledger = (
            resolved.ledger,
            bad | "RejectInvalid" >> beam.Map(_reject_invalid),
            unreadable | "RejectListed" >> beam.Map(_reject_listed),
        ) | "MergeLedger" >> beam.Flatten()
        return {"examples": examples, "ledger": ledger}


class ReadSourceList(beam.PTransform):
    """Reads a `sources.write_source_list` file into SourceFiles, spread over the workers."""

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadLines" >> beam.io.ReadFromText(self._path)
            | "Parse" >> beam.Map(sources_lib.from_json)
            # One small file is one bundle: reshuffle so that every worker reads images.
            | "SpreadOverWorkers" >> beam.Reshuffle()
        )


class SelectSplit(beam.PTransform):
    """(split, id, example) -> (id, example) for one split: what TFDS writes, keyed by id."""

    def __init__(self, split: str):
        super().__init__()
        if split not in schema.SPLITS:
            raise ValueError(f"split={split!r} is not one of {list(schema.SPLITS)}.")
        self._split = split

    def expand(self, examples):
        split = self._split
        return (
            examples
            | "KeepSplit" >> beam.Filter(lambda item: item[0] == split)
            | "KeyById" >> beam.Map(lambda item: (item[1], item[2]))
        )


class WriteLedger(beam.PTransform):
    """Writes ledger records as JSON lines to `<prefix>-SSSSS-of-NNNNN.jsonl`."""

    def __init__(self, prefix: str):
        super().__init__()
        self._prefix = prefix

    def expand(self, ledger):
        return (
            ledger
            | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
            | "WriteJsonLines" >> beam.io.WriteToText(self._prefix, file_name_suffix=".jsonl")
        )
