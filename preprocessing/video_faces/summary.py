"""After the video build's Beam job: rejects.jsonl and a summary that counts videos and faces.

The ledger has one record per input video (`preprocessing.video_faces.transforms`).
`preprocessing.building.summary`, which every build uses, writes rejects.jsonl and
the per split and label counts of inputs (here: videos read, written, rejected,
duplicates); this module adds what only videos have, per split and label:
sampled frames decoded, face crops written (the examples) and face tracks, and
writes the result as `build_summary.json`.

The reject fraction that can fail a build leaves out deliberate rejects: copies
of a video in a later split (`duplicate_across_splits`) and Celeb-DF videos made
from the source video of a test video (`leaks_test_source`).
"""

from __future__ import annotations

import io
import json

import tensorflow as tf

from preprocessing import paths, schema
from preprocessing.building import summary as summary_lib
from preprocessing.video_faces import sources as video_sources

CONTACT_SHEET_FILENAME = "face_crops.png"
VIDEO_COLUMNS = ("read", "written", "rejected", "duplicates", "frames", "faces", "tracks")
DELIBERATE_REASONS = summary_lib.DELIBERATE_REASONS | video_sources.DELIBERATE_PROBLEMS


def summarise(records: list[dict]) -> dict:
    """Counts of videos (`preprocessing.building.summary.summarise`), plus frames, faces, tracks.

    JSON-able.
    """
    summary = summary_lib.summarise(records)
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
    summary_lib.finalise_records(records, output_dir)  # rejects.jsonl (and a first summary)
    summary = summarise(records)
    with tf.io.gfile.GFile(paths.join(output_dir, summary_lib.SUMMARY_FILENAME), "w") as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def write_contact_sheet(
    dataset_dir: str,
    path: str,
    *,
    videos_per_split: int = 3,
    crops_per_video: int = 6,
    thumbnail: int = 96,
    scan: int = 400,
) -> str:
    """Draws a PNG of some videos' face crops as stored, one row per video, to check the build.

    Per split, the first `videos_per_split` video ids (sorted) among the first `scan`
    examples; per video, up to `crops_per_video` crops in frame order, each captioned
    with its frame index and track; the row with the split, label, source and video id.

    Returns:
        `path`.
    """
    rows = _contact_sheet_rows(dataset_dir, videos_per_split, crops_per_video, scan)
    sheet = _draw_contact_sheet(rows, crops_per_video, thumbnail)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path


def _contact_sheet_rows(
    dataset_dir: str, videos_per_split: int, crops_per_video: int, scan: int
) -> list[tuple[str, list]]:
    """(title, examples in frame order) per video shown (see `write_contact_sheet`)."""
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    builder = tfds.builder_from_directory(dataset_dir)
    rows = []
    for split in (s for s in schema.SPLITS if s in builder.info.splits):
        dataset = builder.as_dataset(
            split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
        ).take(scan)
        videos: dict[str, list] = {}
        for example in tfds.as_numpy(dataset):
            videos.setdefault(example[schema.VIDEO_ID].decode(), []).append(example)
        for video_id in sorted(videos)[:videos_per_split]:
            crops = sorted(
                videos[video_id],
                key=lambda e: (int(e[schema.FRAME_INDEX]), int(e[schema.TRACK_ID])),
            )[:crops_per_video]
            first = crops[0]
            title = (
                f"{split} | {schema.LABEL_NAMES[int(first[schema.LABEL])]} | "
                f"{first[schema.SOURCE].decode()} | {video_id}"
            )
            rows.append((title, crops))
    return rows


def _draw_contact_sheet(rows: list[tuple[str, list]], crops_per_video: int, thumbnail: int):
    """The sheet as a PIL image: per row its title, then its crops captioned `f<frame> t<track>`."""
    from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel

    caption, title_height, pad = 12, 16, 4
    width = pad + crops_per_video * (thumbnail + pad)
    width = max(width, 7 * max((len(title) for title, _ in rows), default=0) + 2 * pad)
    row_height = title_height + thumbnail + caption + pad
    sheet = Image.new("RGB", (width, pad + max(1, len(rows)) * row_height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for number, (title, crops) in enumerate(rows):
        top = pad + number * row_height
        draw.text((pad, top), title, fill=(0, 0, 0))
        for column, example in enumerate(crops):
            with Image.open(io.BytesIO(example[schema.IMAGE])) as crop:
                small = crop.convert("RGB").resize((thumbnail, thumbnail))
            left = pad + column * (thumbnail + pad)
            sheet.paste(small, (left, top + title_height))
            draw.text(
                (left, top + title_height + thumbnail),
                f"f{int(example[schema.FRAME_INDEX])} t{int(example[schema.TRACK_ID])}",
                fill=(80, 80, 80),
            )
    if not rows:
        draw.text((pad, pad), "no examples", fill=(0, 0, 0))
    return sheet
