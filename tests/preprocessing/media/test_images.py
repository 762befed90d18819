"""preprocessing.media.images: which bytes are kept, converted or rejected, and why."""

import hashlib
import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from preprocessing.media import images
from tests.preprocessing import planted


def _decode(jpeg: bytes) -> np.ndarray:
    return tf.io.decode_jpeg(jpeg, channels=3).numpy()


def test_valid_rgb_jpeg_keeps_its_bytes_bit_exact():
    original = planted.encode(Image.fromarray(planted._pixels(0)), quality=77)
    stored = images.normalise(original)
    assert stored.jpeg == original
    assert stored.conversion == ""
    assert stored.sha256 == hashlib.sha256(original).hexdigest()
    assert (stored.width, stored.height) == (planted.SIZE, planted.SIZE)


def test_other_size_rgb_jpeg_is_kept_as_is():
    original = planted.encode(Image.fromarray(planted._pixels(1, 40, 48)))
    stored = images.normalise(original)
    assert stored.jpeg == original and (stored.width, stored.height) == (48, 40)


@pytest.mark.parametrize("mode,conversion", [("L", "L->RGB"), ("CMYK", "CMYK->RGB")])
def test_grayscale_and_cmyk_jpegs_become_rgb(mode, conversion):
    ramp = np.linspace(0, 255, planted.SIZE, dtype=np.float32)
    smooth = np.stack(
        [
            ramp[None, :] + 0 * ramp[:, None],
            ramp[:, None] + 0 * ramp[None, :],
            255 - (ramp[None, :] + ramp[:, None]) / 2,
        ],
        axis=-1,
    )
    source = Image.fromarray(smooth.astype(np.uint8)).convert(mode)  # Smooth: little JPEG loss.
    stored = images.normalise(planted.encode(source, quality=95))
    assert stored.conversion == conversion
    pixels = _decode(stored.jpeg)
    assert pixels.shape == (planted.SIZE, planted.SIZE, 3)
    expected = np.asarray(source.convert("RGB"), dtype=np.float32)
    assert np.abs(pixels.astype(np.float32) - expected).mean() < 12  # JPEG noise only.


def test_png_saved_as_jpg_is_converted_once_and_transparency_becomes_white():
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)  # Fully transparent black.
    stored = images.normalise(planted.encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert stored.conversion == "PNG->JPEG+RGBA->RGB"
    assert _decode(stored.jpeg).min() > 240
    # Converting the stored JPEG again keeps it: the conversion happens once.
    assert images.normalise(stored.jpeg).jpeg == stored.jpeg


def test_exif_rotation_is_applied_to_the_pixels_and_dropped():
    stored = images.normalise(planted.rotated_jpeg())
    assert stored.conversion == "exif_orientation=6"
    assert (stored.width, stored.height) == (24, 40)
    assert _decode(stored.jpeg).shape == (40, 24, 3)
    assert Image.open(io.BytesIO(stored.jpeg)).getexif().get(0x0112) is None


@pytest.mark.parametrize(
    "data,error",
    [
        (b"", images.EmptyFileError),
        (b"<html>404</html>", images.NotAnImageError),
        # Starts like a JPEG, then junk: corrupt, reported with the truncated files.
        (b"\xff\xd8\xff\xe0 not really a jpeg", images.TruncatedImageError),
    ],
)
def test_unreadable_inputs_are_rejected_with_their_reason(data, error):
    with pytest.raises(error) as caught:
        images.normalise(data)
    assert isinstance(caught.value, images.InvalidImageError)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_rejected(fmt):
    whole = planted.encode(Image.fromarray(planted._pixels(7, 64, 64)), fmt)
    with pytest.raises(images.TruncatedImageError) as caught:
        images.normalise(whole[: len(whole) // 2])
    assert caught.value.reason == "truncated"


def test_jpeg_without_its_end_marker_is_rejected():
    whole = planted.encode(Image.fromarray(planted._pixels(8)))
    with pytest.raises(images.TruncatedImageError):
        images.normalise(whole[:-2])


def test_jpeg_that_pillow_reads_but_tensorflow_cannot_is_rejected():
    data = planted.tf_undecodable_jpeg()
    Image.open(io.BytesIO(data)).load()  # Pillow: fine.
    with pytest.raises(tf.errors.InvalidArgumentError, match="jpeg::Uncompress failed"):
        tf.io.decode_jpeg(data)  # TensorFlow, as the trainer decodes it: not.
    with pytest.raises(images.TensorFlowDecodeError, match="TensorFlow's decoder") as caught:
        images.normalise(data)
    assert caught.value.reason == "tf_decode_failed"
    assert "{{" not in str(caught.value) and "[Op:" not in str(caught.value)


def test_jpeg_with_bytes_after_its_end_marker_is_kept_bit_exact():
    data = planted.with_trailing_bytes()
    assert len(data) - data.rindex(b"\xff\xd9") > 4096  # Past the old 4 KiB tail check.
    stored = images.normalise(data)
    assert stored.jpeg == data and stored.conversion == ""
    assert _decode(data).shape == (planted.SIZE, planted.SIZE, 3)


def test_rejects_describe_the_bytes_without_quoting_them():
    with pytest.raises(images.NotAnImageError) as caught:
        images.normalise(b"my-hostname-secret\n")
    assert "my-hostname" not in str(caught.value) and "(text)" in str(caught.value)
    with pytest.raises(images.NotAnImageError) as caught:
        images.normalise(bytes(range(256)) * 2)
    assert str(caught.value) == "no image format recognised in 512 bytes"


def test_reasons_are_distinct_stable_codes():
    classes = [
        images.EmptyFileError,
        images.TruncatedImageError,
        images.NotAnImageError,
        images.ImageTooLargeError,
        images.MissingFileError,
        images.TensorFlowDecodeError,
        images.NotARegularFileError,
    ]
    reasons = [cls.reason for cls in classes]
    assert reasons == [
        "zero_byte",
        "truncated",
        "not_an_image",
        "too_large",
        "missing_file",
        "tf_decode_failed",
        "not_a_regular_file",
    ]
    assert all(issubclass(cls, images.InvalidImageError) for cls in classes)
