"""Hostile inputs made cheaply, for the hardening tests (issue 20).

GB-size files are sparse (`truncate`): their size is real to `stat` and to a
reader, but they take no disk space and no time to make. Never write GBs.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

GIB = 1024**3


def sparse_file(path: str, size: int, head: bytes = b"") -> str:
    """A file of `size` bytes: `head`, then zeros that take no disk space."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def jpeg_header_then_zeros(path: str, size: int = 4 * GIB) -> str:
    """What an interrupted, pre-allocated download looks like: a JPEG start, then zeros."""
    return sparse_file(path, size, head=b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")


def edit_detector_json(export_dir: str, **changes) -> str:
    """Rewrites `<export_dir>/detector.json` with `changes` (a value of `...` removes the key)."""
    path = os.path.join(export_dir, "detector.json")
    with open(path) as f:
        values = json.load(f)
    for key, value in changes.items():
        if value is ...:
            values.pop(key, None)
        else:
            values[key] = value
    with open(path, "w") as f:
        json.dump(values, f)  # NaN is written as NaN, as a careless writer would.
    return path


def animated_gif(frames: int = 3, size: int = 48) -> bytes:
    """An animated GIF of `frames` frames of different greys."""
    images = [
        Image.fromarray(np.full((size, size, 3), 40 + 60 * index, np.uint8))
        for index in range(frames)
    ]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=100)
    return buffer.getvalue()
