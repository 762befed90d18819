"""Pictures of a verdict: a photo with its faces boxed and scored, a video's timeline.

Both take the record `trainer.inference.media` produces (`Prediction.to_dict()`), so what
is drawn is exactly what was reported. Headless matplotlib, PNG bytes out.
"""

from __future__ import annotations

from collections.abc import Mapping
import io

import matplotlib

matplotlib.use("Agg")  # Headless: pictures are drawn on servers and in CI.
from matplotlib import patches  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = {"fake": "#d62728", "real": "#2ca02c", None: "#7f7f7f"}
# Longest side of an annotated photo, in inches at DPI: large photos are shown smaller.
MAX_INCHES = 10.0
DPI = 100
# Longest side, in pixels, of the copy of a photo that is drawn on: the PNG is at most
# MAX_INCHES x DPI = 1000 pixels wide, so more detail is never seen, and drawing on the
# full 67-megapixel original took gigabytes. Boxes keep the original's coordinates.
MAX_DRAWN_SIDE = 2000


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def verdict_text(record: Mapping, threshold: float) -> str:
    if record.get("p_fake") is None:
        reason = record.get("status", "no verdict").replace("_", " ")
        return f"no verdict: {reason}"
    return (
        f"{record['label']} (p_fake {record['p_fake']:.3f}, threshold {threshold:.3f}; "
        "the most suspicious face decides)"
    )


def annotate_photo(
    pixels: np.ndarray,
    record: Mapping,
    threshold: float,
    size: tuple[int, int] | None = None,
) -> bytes:
    """The photo with a box per face: red if called fake, green if real, grey if too small.

    Args:
        pixels: the photo, or a downscaled copy of it (`MAX_DRAWN_SIDE`).
        record: its record; boxes and landmarks are in the original's pixels.
        size: (width, height) of the original when `pixels` is a smaller copy.
    """
    width, height = size or (pixels.shape[1], pixels.shape[0])
    scale = MAX_INCHES / max(height, width)
    figure, axis = plt.subplots(figsize=(max(2.0, width * scale), max(2.0, height * scale)))
    axis.imshow(pixels, extent=(0, width, height, 0))
    axis.axis("off")
    line = max(1.0, 2.5 * max(height, width) / 1000)
    for face in record.get("faces", ()):
        colour = COLOURS.get(face.get("label"))
        x1, y1, x2, y2 = face["box"]
        axis.add_patch(
            patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=line, color=colour)
        )
        for x, y in face["landmarks"].values():
            axis.plot(x, y, ".", color=colour, markersize=3 * line)
        text = f"#{face['face']} " + (
            f"{face['label']} {face['p_fake']:.2f}" if "p_fake" in face else "not scored"
        )
        axis.text(
            x1,
            y1,
            text,
            color="white",
            fontsize=9,
            va="bottom",
            bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.5},
        )
    for face in record.get("too_small", ()):
        x1, y1, x2, y2 = face["box"]
        axis.add_patch(
            patches.Rectangle(
                (x1, y1), x2 - x1, y2 - y1, fill=False, lw=line, ls="--", color=COLOURS[None]
            )
        )
        axis.text(x1, y2, "too small", color=COLOURS[None], fontsize=8, va="top")
    axis.set_title(verdict_text(record, threshold), fontsize=10)
    return _png(figure)


def timeline(record: Mapping, threshold: float) -> bytes:
    """p_fake over time, one line per face track, with the threshold and each track's score."""
    figure, axis = plt.subplots(figsize=(8, 3.6))
    info = record.get("video", {})
    duration = info.get("duration") or 0.0
    cmap = matplotlib.colormaps["tab10"]
    for track in record.get("tracks", ()):
        times = [frame["time"] for frame in track["frames"]]
        scores = [frame["p_fake"] for frame in track["frames"]]
        colour = cmap(track["track_id"] % 10)
        axis.plot(
            times,
            scores,
            "o-",
            color=colour,
            markersize=3,
            label=f"track {track['track_id']}: {track['label']} {track['p_fake']:.2f} "
            f"({track['num_frames']} frames)",
        )
    axis.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    axis.set_xlim(0, max(duration, 1e-3))
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("time (s)")
    axis.set_ylabel("p_fake per sampled frame")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    sampled = record.get("frames_sampled", 0)
    with_faces = record.get("frames_with_faces", 0)
    axis.set_title(
        f"{verdict_text(record, threshold).replace('face decides', 'track decides')}\n"
        f"{sampled} frames sampled, {with_faces} with a face",
        fontsize=9,
    )
    return _png(figure)
