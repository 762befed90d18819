"""A tiny Kaggle-layout dataset with one of every kind of bad input planted in it.

Shared by the build tests. `make_planted(root)` writes the set and returns what
the build must do with each planted input: {id: (outcome, reason, note)}.
"""

from __future__ import annotations

import csv
import io
import os

import numpy as np
from PIL import Image

from preprocessing import schema, synthetic

IMAGE_ROOT = synthetic.KAGGLE_IMAGE_ROOT
COUNTS = {"train": 4, "valid": 2, "test": 2}
SIZE = 32


def _pixels(seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def rotated_jpeg() -> bytes:
    """A 40 wide x 24 high RGB JPEG whose EXIF says "rotate 90° clockwise" (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(_pixels(3, height=24, width=40)), exif=exif.tobytes())


def tf_undecodable_jpeg(seed: int = 9) -> bytes:
    """A JPEG Pillow reads but TensorFlow cannot (`jpeg::Uncompress failed`).

    A comment marker (0xFFFE) in the middle of the entropy-coded scan data: Pillow's
    decoder skips it and carries on, TensorFlow's stops there.
    """
    base = encode(Image.fromarray(_pixels(seed)))
    sos = base.index(b"\xff\xda")
    scan_start = sos + 2 + int.from_bytes(base[sos + 2 : sos + 4], "big")
    middle = (scan_start + len(base) - 2) // 2
    return base[:middle] + b"\xff\xfe" + base[middle:]


def with_trailing_bytes(seed: int = 10) -> bytes:
    """A valid JPEG with 5,000 bytes after its end-of-image marker (both decoders read it)."""
    return encode(Image.fromarray(_pixels(seed))) + b"\x00" * 4990 + b"trailer123"


# Written outside manual_dir, reached through a link: must never appear in a report.
SECRET = b"SECRET-CONTENT-never-in-reports"


def _append_csv(root: str, folder: str, relative: str, label: int) -> None:
    kaggle = schema.KAGGLE_CSV_REAL if label == schema.REAL else schema.KAGGLE_CSV_FAKE
    path = os.path.join(root, f"{folder}.csv")
    with open(path, encoding="utf-8") as f:
        rows = sum(1 for _ in f) - 1
    with open(path, "a", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(
            [
                rows,
                f"planted/{relative}",
                os.path.basename(relative),
                kaggle,
                schema.LABEL_NAMES[label],
                relative,
            ]
        )


def make_planted(root: str) -> dict[str, tuple[str, str, str]]:
    """Writes the planted set under `root`; returns {id: (outcome, reason, note)}.

    outcome is "written" or "rejected"; reason is the reject reason; note is a
    substring expected in the written record's conversion or duplicate field.
    """
    synthetic.write_dataset(root, SIZE, dict(COUNTS), seed=11)
    image_root = os.path.join(root, IMAGE_ROOT)
    real_train = sorted(os.listdir(os.path.join(image_root, "train", "real")))
    fake_train = sorted(os.listdir(os.path.join(image_root, "train", "fake")))
    valid_jpeg = open(os.path.join(image_root, "train", "real", real_train[0]), "rb").read()
    planted = {
        # (relative path, bytes or None for "listed only", label, in CSV?)
        "train/real/zero.jpg": (b"", schema.REAL, True),
        "train/fake/truncated.jpg": (valid_jpeg[: len(valid_jpeg) // 2], schema.FAKE, True),
        "train/real/not_an_image.jpg": (
            b"<html><body>404 Not Found</body></html>\n",
            schema.REAL,
            True,
        ),
        "train/fake/png_as_jpg.jpg": (
            encode(Image.fromarray(_pixels(1)), "PNG"),
            schema.FAKE,
            True,
        ),
        "train/real/grayscale.jpg": (
            encode(Image.fromarray(_pixels(2)[:, :, 0], "L")),
            schema.REAL,
            True,
        ),
        "train/fake/cmyk.jpg": (
            encode(Image.fromarray(_pixels(4)).convert("CMYK")),
            schema.FAKE,
            True,
        ),
        "valid/real/exif_rotated.jpg": (rotated_jpeg(), schema.REAL, True),
        "test/fake/other_size.jpg": (
            encode(Image.fromarray(_pixels(5, 40, 48)), quality=90),
            schema.FAKE,
            True,
        ),
        "train/real/missing.jpg": (None, schema.REAL, True),
        "test/real/not_in_csv.jpg": (encode(Image.fromarray(_pixels(6))), schema.REAL, False),
        # Same bytes as a training image: leakage into the test split.
        "test/real/leaked_copy.jpg": (valid_jpeg, schema.REAL, True),
        # Same bytes as another training image, in train: a within-split duplicate.
        "train/fake/copy_in_train.jpg": (
            open(os.path.join(image_root, "train", "fake", fake_train[0]), "rb").read(),
            schema.FAKE,
            True,
        ),
    }
    planted["train/real/tf_undecodable.jpg"] = (tf_undecodable_jpeg(), schema.REAL, True)
    planted["train/fake/trailing_bytes.jpg"] = (with_trailing_bytes(), schema.FAKE, True)
    planted["valid/fake/csv_conflict.jpg"] = (
        encode(Image.fromarray(_pixels(12))),
        schema.FAKE,
        True,
    )
    # The same bytes in both class folders of one split: neither label can be trusted.
    twin = encode(Image.fromarray(_pixels(13)))
    planted["valid/real/twin.jpg"] = (twin, schema.REAL, True)
    planted["valid/fake/twin.jpg"] = (twin, schema.FAKE, True)
    for relative, (data, label, listed) in planted.items():
        if data is not None:
            with open(os.path.join(image_root, relative), "wb") as f:
                f.write(data)
        if listed:
            _append_csv(root, relative.split("/")[0], relative, label)
    # The same file listed again with the other label: neither label can be trusted.
    _append_csv(root, "valid", "valid/fake/csv_conflict.jpg", schema.REAL)
    # Things that are not regular files, listed in the CSV like the others.
    os.mkfifo(os.path.join(image_root, "train/real/named_pipe.jpg"))
    _append_csv(root, "train", "train/real/named_pipe.jpg", schema.REAL)
    os.symlink("loop_b.jpg", os.path.join(image_root, "train/fake/loop_a.jpg"))
    os.symlink("loop_a.jpg", os.path.join(image_root, "train/fake/loop_b.jpg"))
    for name in ("loop_a.jpg", "loop_b.jpg"):
        _append_csv(root, "train", f"train/fake/{name}", schema.FAKE)
    outside = os.path.join(os.path.dirname(os.path.abspath(root)), "outside_secret.jpg")
    with open(outside, "wb") as f:
        f.write(SECRET)
    os.symlink(outside, os.path.join(image_root, "test/fake/outside_link.jpg"))
    _append_csv(root, "test", "test/fake/outside_link.jpg", schema.FAKE)
    # A link to an input of another split: the file is read once, under its own name.
    linked = os.path.join("..", "..", "train", "fake", fake_train[1])
    os.symlink(linked, os.path.join(image_root, "valid/fake/link_to_train.jpg"))
    _append_csv(root, "valid", "valid/fake/link_to_train.jpg", schema.FAKE)
    # A spreadsheet-saved CSV: UTF-8 with a byte-order mark before the header.
    test_csv = os.path.join(root, "test.csv")
    with open(test_csv, "rb") as f:
        content = f.read()
    with open(test_csv, "wb") as f:
        f.write(b"\xef\xbb\xbf" + content)
    return {
        "train/real/tf_undecodable.jpg": ("rejected", "tf_decode_failed", ""),
        "train/fake/trailing_bytes.jpg": ("written", "", ""),
        "valid/fake/csv_conflict.jpg": ("rejected", "conflicting_csv_rows", ""),
        "train/real/named_pipe.jpg": ("rejected", "not_a_regular_file", ""),
        "train/fake/loop_a.jpg": ("rejected", "broken_link", ""),
        "train/fake/loop_b.jpg": ("rejected", "broken_link", ""),
        "test/fake/outside_link.jpg": ("rejected", "link_outside_input", ""),
        "valid/fake/link_to_train.jpg": ("rejected", "linked_copy", ""),
        "train/real/zero.jpg": ("rejected", "zero_byte", ""),
        "train/fake/truncated.jpg": ("rejected", "truncated", ""),
        "train/real/not_an_image.jpg": ("rejected", "not_an_image", ""),
        "train/fake/png_as_jpg.jpg": ("written", "", "PNG->JPEG"),
        "train/real/grayscale.jpg": ("written", "", "L->RGB"),
        "train/fake/cmyk.jpg": ("written", "", "CMYK->RGB"),
        "valid/real/exif_rotated.jpg": ("written", "", "exif_orientation=6"),
        "test/fake/other_size.jpg": ("written", "", ""),
        "train/real/missing.jpg": ("rejected", "missing_file", ""),
        "test/real/not_in_csv.jpg": ("rejected", "not_in_csv", ""),
        "test/real/leaked_copy.jpg": ("written", "", "duplicate_across_splits"),
        "train/fake/copy_in_train.jpg": ("written", "", "duplicate_within_split"),
        "valid/real/twin.jpg": ("rejected", "same_bytes_two_labels", ""),
        "valid/fake/twin.jpg": ("rejected", "same_bytes_two_labels", ""),
    }
