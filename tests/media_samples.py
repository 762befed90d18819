"""Test photographs and videos made at test time from scikit-image's bundled photographs.

`skimage.data.astronaut()` is a real portrait (Eileen Collins, NASA, public domain)
and `skimage.data.coffee()` a real photograph with no face; both ship inside the
scikit-image wheel, so nothing is downloaded and no image is copied into this
repository. Composites (several faces, scales, a rotated copy) and short videos
are built from them here, with PyAV for the videos.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image


@functools.cache
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@functools.cache
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


# The astronaut's head and shoulders in astronaut() (x1, y1, x2, y2): a region
# larger than the face, pasted as "a person" into other pictures.
HEAD = (130, 20, 320, 230)


def head(side: int, angle: float = 0.0) -> np.ndarray:
    """The astronaut's head region resized to `side` square, rotated by `angle` degrees."""
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


def group_photo(width: int = 640, height: int = 360) -> np.ndarray:
    """Two people at different scales on a coffee background (a face-free photo)."""
    picture = canvas(width, height)
    picture = paste(picture, head(int(0.55 * height)), int(0.06 * width), int(0.28 * height))
    return paste(picture, head(int(0.3 * height)), int(0.66 * width), int(0.11 * height))


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
) -> str:
    """Encodes RGB frames with PyAV; `rotation` sets the display matrix (counter-clockwise)."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(path, "w") as container:
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


def moving_faces_frames(count: int = 10, width: int = 480, height: int = 270) -> list[np.ndarray]:
    """Person A walks left to right through every frame; person B is there only in the
    middle third of the frames (appears, then leaves)."""
    frames = []
    a = head(120)
    b = head(100)
    for index in range(count):
        picture = canvas(width, height)
        x = int(10 + (width - 140 - 10) * index / max(1, count - 1) * 0.4)
        picture = paste(picture, a, x, 60)
        if count // 3 <= index < 2 * count // 3:
            picture = paste(picture, b, width - 120, 120)
        frames.append(picture)
    return frames
