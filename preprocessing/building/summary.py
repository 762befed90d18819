"""After the Beam job: rejects.jsonl, the summary table, and the reject-rate check.

The job writes one ledger record per input (see `ledger.ledger_record`).
This module reads those shards back, once, on the launching machine, and
leaves two small files beside the dataset:

- `rejects.jsonl`: every input that was not written, with path, split and reason;
- `build_summary.json`: per split and label, inputs read, written, rejected,
  duplicates and converted, plus the reject counts by reason.

The summary is also what decides whether the build failed: a high reject rate
almost always means the job read the wrong thing, and the message says what.
"""

from __future__ import annotations

import collections
import json

from absl import logging
import tensorflow as tf

from preprocessing import paths, schema

REJECTS_FILENAME = "rejects.jsonl"
SUMMARY_FILENAME = "build_summary.json"
# Rejects that are a deliberate choice (--duplicates=drop), not bad input: they
# do not count towards --max_reject_fraction.
DELIBERATE_REASONS = frozenset({"duplicate_across_splits"})
COLUMNS = ("read", "written", "rejected", "duplicates", "converted")

# Most frequent reject reason -> the likely cause, for the failure message.
_LIKELY_CAUSES = {
    "not_an_image": "--manual_dir points at files that are not images (a wrong folder, or HTML "
    "error pages saved by a failed download)",
    "zero_byte": "the copy or extraction was interrupted and left empty files",
    "truncated": "the download or extraction is incomplete: files were cut short",
    "too_large": "--manual_dir holds images far larger than face crops: probably the wrong folder",
    "missing_file": "the split CSVs do not describe these folders (CSVs from another copy, a "
    "partial extraction, or a wrong --manual_dir)",
    "not_in_csv": "the split CSVs do not list these files (CSVs from another copy of the dataset, "
    "or extra images copied into the folders)",
    "label_conflict": "the CSV labels disagree with the real/fake folders (CSVs from another "
    "dataset version)",
    "conflicting_csv_rows": "the split CSVs list files twice with both labels (CSVs merged "
    "from two sources?)",
    "tf_decode_failed": "the JPEGs are damaged in a way Pillow tolerates but TensorFlow does not "
    "(a broken copy or a tool that rewrote them)",
    "not_a_regular_file": "--manual_dir holds named pipes, sockets or devices instead of files",
    "link_outside_input": "the inputs are symbolic links to files outside --manual_dir (pass "
    "--allow_links_outside_input if that is intended)",
    "broken_link": "the inputs are symbolic links whose targets are missing",
    "linked_copy": "the folders link to the same files several times",
    "same_bytes_two_labels": "the same files were copied into both the real and the fake folders",
}


class RejectFractionExceededError(RuntimeError):
    """More inputs were rejected than --max_reject_fraction allows."""


class EmptySplitError(RuntimeError):
    """A split's inputs were all rejected: TFDS cannot write a split of zero examples."""


def empty_splits(summary: dict) -> list[str]:
    """The splits that read inputs and wrote none, in split order."""
    return [
        split
        for split, labels in summary["splits"].items()
        if not sum(row["written"] for row in labels.values())
    ]


def empty_split_error(summary: dict, splits: list[str], rejects_path: str) -> EmptySplitError:
    """One line naming each empty split, its rejects by reason, and where they are listed.

    A build fails rather than leaving the split out: a dataset without the split
    the trainer or evaluation expects would fail later, further from the cause.
    """
    parts = [
        f"{split} ({sum(row['read'] for row in summary['splits'][split].values())} input(s), "
        "all rejected)"
        for split in splits
    ]
    top = ", ".join(f"{reason}: {n}" for reason, n in summary["reject_reasons"].items())
    return EmptySplitError(
        f"no examples for split {', '.join(parts)}; TFDS cannot write an empty split, so "
        f"nothing was installed. Rejects by reason: {top}. Every reject is listed in "
        f"{rejects_path}; fix or add inputs for that split."
    )


def read_ledger(pattern: str) -> list[dict]:
    """All ledger records from the shards matching `pattern`, sorted by (split, id)."""
    records = []
    for shard in sorted(tf.io.gfile.glob(pattern)):
        with tf.io.gfile.GFile(shard, "r") as f:
            records.extend(json.loads(line) for line in f if line.strip())
    records.sort(key=lambda r: (schema.SPLITS.index(r["split"]), r["id"]))
    return records


def summarise(records: list[dict]) -> dict:
    """Counts per split and label, and rejects per reason. JSON-able."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    reasons: collections.Counter = collections.Counter()
    for record in records:
        row = table.setdefault(record["split"], {}).setdefault(
            record["label"], dict.fromkeys(COLUMNS, 0)
        )
        row["read"] += 1
        row["written"] += record["outcome"] == "written"
        row["rejected"] += record["outcome"] == "rejected"
        row["duplicates"] += bool(record.get("duplicate"))
        row["converted"] += bool(record.get("conversion")) and record["outcome"] == "written"
        if record["outcome"] == "rejected":
            reasons[record["reason"]] += 1
    read = len(records)
    unintended = sum(n for reason, n in reasons.items() if reason not in DELIBERATE_REASONS)
    return {
        "splits": {split: table[split] for split in schema.SPLITS if split in table},
        "reject_reasons": dict(sorted(reasons.items())),
        "total": {
            "read": read,
            "written": sum(r["outcome"] == "written" for r in records),
            "rejected": sum(r["outcome"] == "rejected" for r in records),
            "reject_fraction": unintended / read if read else 0.0,
        },
    }


def format_table(summary: dict) -> str:
    """The summary as a Markdown table, one row per split and label, plus reasons."""
    lines = [
        "| split | label | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for split in (s for s in schema.SPLITS if s in summary["splits"]):
        labels = summary["splits"][split]
        for label in schema.LABEL_NAMES:
            if label in labels:
                row = labels[label]
                lines.append(
                    f"| {split} | {label} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |"
                )
    total = summary["total"]
    lines.append(f"| all | all | {total['read']} | {total['written']} | {total['rejected']} | | |")
    if summary["reject_reasons"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in summary["reject_reasons"].items())
        lines.append("")
        lines.append(f"Rejects by reason: {reasons}")
    return "\n".join(lines)


def finalise(ledger_pattern: str, output_dir: str) -> dict:
    """Writes rejects.jsonl and build_summary.json to `output_dir`; returns the summary."""
    return finalise_records(read_ledger(ledger_pattern), output_dir)


def finalise_records(records: list[dict], output_dir: str) -> dict:
    """`finalise` for ledger records already read."""
    summary = summarise(records)
    rejects = "".join(
        json.dumps(
            {
                k: record[k]
                for k in ("path", "split", "label", "reason", "detail", "id", "duplicate_of")
            },
            sort_keys=True,
        )
        + "\n"
        for record in records
        if record["outcome"] == "rejected"
    )
    with tf.io.gfile.GFile(paths.join(output_dir, REJECTS_FILENAME), "w") as f:
        f.write(rejects)  # Written even when empty: "no rejects" is an answer too.
    with tf.io.gfile.GFile(paths.join(output_dir, SUMMARY_FILENAME), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True))
    logging.info(
        "Build summary: %d read, %d written, %d rejected.",
        summary["total"]["read"],
        summary["total"]["written"],
        summary["total"]["rejected"],
    )
    return summary


def check_reject_fraction(
    summary: dict,
    max_reject_fraction: float | None,
    rejects_path: str,
    *,
    limit_name: str = "--max_reject_fraction",
    how_to_raise: str = "raise --max_reject_fraction",
) -> None:
    """Fails when too many inputs were rejected, naming the likely cause.

    `limit_name` is what the caller's user calls the limit, and `how_to_raise`
    (ending the message) says how they raise it: a launcher flag by default.

    Raises:
        RejectFractionExceededError: the fraction of inputs rejected for bad
            input (not deliberate duplicate drops) exceeds `max_reject_fraction`.
    """
    if max_reject_fraction is None:
        return
    fraction = summary["total"]["reject_fraction"]
    if fraction <= max_reject_fraction:
        return
    reasons = {r: n for r, n in summary["reject_reasons"].items() if r not in DELIBERATE_REASONS}
    top = max(reasons, key=reasons.get)
    cause = _LIKELY_CAUSES.get(top, "the inputs are not what the job expects")
    raise RejectFractionExceededError(
        f"{fraction:.1%} of {summary['total']['read']} inputs were rejected, more than "
        f"{limit_name}={max_reject_fraction}. Most common reason: {top} "
        f"({reasons[top]}). Likely cause: {cause}. Every reject is listed in {rejects_path}; "
        f"fix the inputs, or, if these rejects are expected, {how_to_raise}."
    )
