"""The ledger of a dataset build: one JSON record per input, and the Beam steps around it.

Every input of a build ends as exactly one ledger record, `written` or
`rejected` with a reason (`ledger_record`), which is how "inputs read =
examples written + rejects" holds by construction. Both builds (images:
`preprocessing.real_and_fake_faces.transforms`; videos:
`preprocessing.video_faces.transforms`) write their records through
`WriteLedger`, read their input list with `ReadSourceList` and hand TFDS one
split at a time with `SelectSplit`; `preprocessing.building.summary` turns the
ledger into rejects.jsonl and the summary table.
"""

from __future__ import annotations

import json

import apache_beam as beam

from preprocessing import schema
from preprocessing.building import inputs

# Outcomes of an input, and the duplicate kinds the leakage audit records.
WRITTEN = "written"
REJECTED = "rejected"
DUPLICATE_ACROSS_SPLITS = "duplicate_across_splits"
DUPLICATE_WITHIN_SPLIT = "duplicate_within_split"
# The same bytes under both labels: every copy is rejected (leakage audit, both builds).
SAME_BYTES_TWO_LABELS = "same_bytes_two_labels"


def ledger_record(
    source: inputs.SourceFile,
    outcome: str,
    *,
    reason: str = "",
    detail: str = "",
    sha256: str = "",
    conversion: str = "",
    duplicate: str = "",
    duplicate_of: str = "",
    source_sha256: str = "",
) -> dict:
    """The one JSON-able record each input gets; rejects.jsonl is the `rejected` ones.

    `source_sha256` is the hash of the bytes read (before any conversion): what the
    input fingerprint records as the dataset's content.
    """
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
        "source_sha256": source_sha256,
    }


def label_conflict(sources: list[inputs.SourceFile]) -> str:
    """For the inputs of one SHA-256 group: "" when they agree on the label, else why not.

    The same content cannot be both real and fake: keeping one copy would teach
    whichever label the sort order picked, keeping both teaches both. Every copy
    is rejected instead, and the detail names the copies under each label.
    """
    by_label: dict[int, list[str]] = {}
    for source in sources:
        by_label.setdefault(source.label, []).append(f"{source.id} ({source.split})")
    if len(by_label) < 2:
        return ""
    copies = "; ".join(
        f"{schema.LABEL_NAMES[label]}: " + ", ".join(sorted(ids)[:3])
        for label, ids in sorted(by_label.items())
    )
    return (
        f"the same bytes under both labels ({copies}), so neither label can be trusted; "
        "remove the copy from the wrong class folder"
    )


class ReadSourceList(beam.PTransform):
    """Reads a `inputs.write_source_list` file into SourceFiles, spread over the workers.

    `parse` turns one JSON line into an input record: `inputs.from_json` for
    images, `video_sources.from_json` for the video build's list.
    """

    def __init__(self, path: str, parse=inputs.from_json):
        super().__init__()
        self._path = path
        self._parse = parse

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadLines" >> beam.io.ReadFromText(self._path)
            | "Parse" >> beam.Map(self._parse)
            # One small file is one bundle: reshuffle so that every worker reads images.
            | "SpreadOverWorkers" >> beam.Reshuffle()
        )


class SelectSplit(beam.PTransform):
    """(split, id, example) -> (id, example) for one split: what TFDS writes, keyed by id."""

    def __init__(self, split: str, after=None):
        """`after`: a side input (the written ledger) that must be complete first."""
        super().__init__()
        if split not in schema.SPLITS:
            raise ValueError(f"split={split!r} is not one of {list(schema.SPLITS)}.")
        self._split = split
        self._after = after

    def expand(self, examples):
        split = self._split
        if self._after is not None:
            examples = examples | "AfterLedger" >> beam.Map(lambda item, _: item, self._after)
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
