"""After the video build's Beam job: rejects.jsonl and a summary that counts videos and faces.

The ledger has one record per input video (`video_transforms`). The image
build's `preprocessing.report` writes rejects.jsonl and the per split and label
counts of inputs (here: videos read, written, rejected, duplicates); this module
adds what only videos have, per split and label: sampled frames decoded, face
crops written (the examples) and face tracks, and writes the result as
`build_summary.json`.

The reject fraction that can fail a build leaves out deliberate rejects: copies
of a video in a later split (`duplicate_across_splits`) and Celeb-DF videos made
from the source video of a test video (`leaks_test_source`).
"""

from __future__ import annotations

import json

import tensorflow as tf

from preprocessing import paths, report, schema, video_sources

VIDEO_COLUMNS = ("read", "written", "rejected", "duplicates", "frames", "faces", "tracks")
DELIBERATE_REASONS = report.DELIBERATE_REASONS | video_sources.DELIBERATE_PROBLEMS


def summarise(records: list[dict]) -> dict:
    """`report.summarise` (counts of videos) plus frames, faces and tracks. JSON-able."""
    summary = report.summarise(records)
    for split_rows in summary["splits"].values():
        for row in split_rows.values():
            row.pop("converted", None)  # Face crops are always encoded once: nothing to say.
            row.update(frames=0, faces=0, tracks=0)
    for record in records:
        row = summary["splits"][record["split"]][record["label"]]
        for key in ("frames", "faces", "tracks"):
            row[key] += int(record.get(key, 0))
    total = summary["total"]
    for key in ("frames", "faces", "tracks"):
        total[key] = sum(int(record.get(key, 0)) for record in records)
    unintended = sum(
        n for reason, n in summary["reject_reasons"].items() if reason not in DELIBERATE_REASONS
    )
    total["reject_fraction"] = unintended / total["read"] if total["read"] else 0.0
    total["deliberate_rejects"] = sum(
        n for reason, n in summary["reject_reasons"].items() if reason in DELIBERATE_REASONS
    )
    return summary


def format_table(summary: dict) -> str:
    """The summary as a Markdown table, one row per split and label (videos, then faces)."""
    names = {"read": "videos read", "written": "videos written", "rejected": "rejected"}
    lines = [
        "| split | label | " + " | ".join(names.get(c, c) for c in VIDEO_COLUMNS) + " |",
        "|---|---|" + "---:|" * len(VIDEO_COLUMNS),
    ]
    for split in (s for s in schema.SPLITS if s in summary["splits"]):
        for label in schema.LABEL_NAMES:
            row = summary["splits"][split].get(label)
            if row is not None:
                cells = " | ".join(str(row[c]) for c in VIDEO_COLUMNS)
                lines.append(f"| {split} | {label} | {cells} |")
    total = summary["total"]
    lines.append(
        f"| all | all | {total['read']} | {total['written']} | {total['rejected']} | | "
        f"{total['frames']} | {total['faces']} | {total['tracks']} |"
    )
    if summary["reject_reasons"]:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in summary["reject_reasons"].items())
        lines += ["", f"Rejected videos by reason: {reasons}"]
    return "\n".join(lines)


def finalise_records(records: list[dict], output_dir: str) -> dict:
    """Writes rejects.jsonl and build_summary.json to `output_dir`; returns the summary."""
    report.finalise_records(records, output_dir)  # rejects.jsonl (and a first summary)
    summary = summarise(records)
    with tf.io.gfile.GFile(paths.join(output_dir, report.SUMMARY_FILENAME), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True))
    return summary
