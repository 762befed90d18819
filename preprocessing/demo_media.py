"""The demo's photo and video with real faces: `python -m preprocessing.demo_media`.

Writes `group_photo.jpg` (two people at different scales and a turned copy on a
face-free photograph) and `walk.mp4` (one person crossing the frame the whole
time, a second one who appears and leaves), built from scikit-image's bundled
photographs: `astronaut()` (Eileen Collins, NASA, public domain) and `coffee()`.
Nothing is downloaded and no image is stored in the repository; scikit-image
comes with the `test` extra that `make demo` installs. The tests build their
composites with the same functions.

The demo's detector learned cartoon faces at 64 px: its scores on these real
faces say nothing about real deepfakes. The point is the path: faces found,
aligned, scored, aggregated, drawn.
"""

from __future__ import annotations

import functools
import io
import os
import sys

from absl import app, flags
import numpy as np
from PIL import Image

from preprocessing import cli

# The astronaut's head and shoulders in astronaut() (x1, y1, x2, y2).
HEAD = (130, 20, 320, 230)


@functools.cache
def astronaut() -> np.ndarray:
    from skimage import data  # Lazy: only the demo and the tests need scikit-image.

    return data.astronaut()


@functools.cache
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def head(side: int, angle: float = 0.0) -> np.ndarray:
    """The astronaut's head region resized to `side` square, turned `angle` degrees
    counter-clockwise."""
    region = Image.fromarray(astronaut()).crop(HEAD).resize((side, side), Image.Resampling.LANCZOS)
    if angle:
        region = region.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(90, 90, 90))
    return np.asarray(region)


def canvas(width: int, height: int) -> np.ndarray:
    """A face-free background: the coffee photograph stretched to width x height."""
    return np.asarray(
        Image.fromarray(coffee()).resize((width, height), Image.Resampling.BILINEAR)
    ).copy()


def paste(picture: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    out = picture.copy()
    h, w = patch.shape[:2]
    out[y : y + h, x : x + w] = patch
    return out


def group_photo(width: int = 640, height: int = 360, turned: bool = False) -> np.ndarray:
    """Two people at different scales (faces ~0.24 and ~0.13 of the height) on the coffee
    photograph; with `turned`, a third copy turned 30 degrees."""
    picture = canvas(width, height)
    picture = paste(picture, head(int(0.55 * height)), int(0.06 * width), int(0.28 * height))
    picture = paste(picture, head(int(0.3 * height)), int(0.66 * width), int(0.11 * height))
    if turned:
        side = int(0.42 * height)
        picture = paste(picture, head(side, angle=30), int(0.36 * width), height - side)
    return picture


def moving_faces_frames(count: int = 10, width: int = 480, height: int = 270) -> list[np.ndarray]:
    """Person A moves right through every frame; person B is there only in the middle
    third of the frames (appears, then leaves)."""
    a, b = head(int(0.44 * height)), head(int(0.37 * height))
    frames = []
    for index in range(count):
        x = int(0.02 * width + 0.4 * (0.69 * width) * index / max(1, count - 1))
        picture = paste(canvas(width, height), a, x, int(0.22 * height))
        if count // 3 <= index < 2 * count // 3:
            picture = paste(picture, b, width - b.shape[1] - int(0.04 * width), int(0.44 * height))
        frames.append(picture)
    return frames


def encode(pixels: np.ndarray, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, quality=95)
    return buffer.getvalue()


def write_video(
    path: str,
    frames: list[np.ndarray],
    rate: int = 5,
    codec: str = "libx264",
    rotation: int | None = None,
    container_options: dict | None = None,
) -> str:
    """Encodes RGB frames with PyAV; `rotation` sets the display matrix (counter-clockwise).

    `container_options` go to the muxer, e.g. {"movflags": "faststart"} to put an
    MP4's index (moov) before the frames.
    """
    import av

    height, width = frames[0].shape[:2]
    with av.open(path, "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_demo_media(output_dir: str, frames: int = 20) -> list[str]:
    """Writes group_photo.jpg (640x360) and walk.mp4 (640x360, 4 fps) into `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    photo = os.path.join(output_dir, "group_photo.jpg")
    with open(photo, "wb") as f:
        f.write(encode(group_photo(640, 360, turned=True)))
    clip = write_video(
        os.path.join(output_dir, "walk.mp4"), moving_faces_frames(frames, 640, 360), rate=4
    )
    return [photo, clip]


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this tool's flags; called by `run_main`, so importing the module defines none."""
    flags.DEFINE_string("output_dir", None, "Folder to write group_photo.jpg and walk.mp4 into.")
    flags.DEFINE_integer("frames", 20, "Frames in walk.mp4 (4 per second).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required, e.g. --output_dir=demo_out/media.")
    for path in write_demo_media(FLAGS.output_dir, FLAGS.frames):
        print(path)


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-demo-media")


if __name__ == "__main__":
    run_main()
