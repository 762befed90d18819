"""Validates one input file's bytes and turns them into the JPEG bytes we store.

The rule of the data contract: a valid RGB JPEG is stored with its original
bytes, bit-exact, because re-encoding would add a second round of compression
artefacts to every image, and compression artefacts are exactly the kind of
trace a deepfake detector learns from. Anything else that decodes (PNG,
grayscale or CMYK saved as `.jpg`, EXIF-rotated photos, palette images) is
converted once to an upright RGB JPEG. What does not decode is rejected with an
exception whose class names the reason, so the Beam job can catch the whole
family with `with_exception_handling(exc_class=InvalidImageError)` and still
count each reason apart.

Kept bytes are also decoded with TensorFlow's JPEG decoder, the one the trainer
and the exported model use, in full and through a crop window
(`decode_and_crop_jpeg` skips scanlines, a different code path): Pillow
tolerates some damage that TensorFlow does not (a marker inside the scan data
is one), and such a file would otherwise pass the build and stop training at a
random step. Conversely, bytes after the end-of-image marker are accepted when
both decoders read the image.

Messages never quote the file's bytes: reports must not leak what an input
(or a link target) holds.

Importing this module costs Pillow only; TensorFlow is imported by the check
that needs it, so tools that never call `normalise` stay light.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re

from PIL import Image, ImageOps, UnidentifiedImageError

# Quality of the one re-encode that non-RGB-JPEG inputs get: high enough that
# the conversion adds little of its own compression trace.
NORMALISED_JPEG_QUALITY = 95
# EXIF tag 0x0112: how the camera was held; 1 means "upright already".
_EXIF_ORIENTATION = 0x0112
_JPEG_END_OF_IMAGE = b"\xff\xd9"
# The per-file cap of every image reader (`--max_file_bytes`): no real face image comes
# near it (the 140k JPEGs are 20-600 KB, a 12000x12000 PNG photo about 50-100 MB at most),
# while a 3 GB stray file or a pre-allocated, interrupted download would otherwise be
# read whole into memory just to be rejected.
DEFAULT_MAX_FILE_BYTES = 100 * 1024 * 1024


class InvalidImageError(Exception):
    """An input that cannot become an example. Subclasses name the reason.

    `reason` is a stable snake_case code: it is what `rejects.jsonl`, the Beam
    counters and the summary table report.
    """

    reason = "invalid_image"


class EmptyFileError(InvalidImageError):
    """The file has zero bytes (an interrupted copy or download, usually)."""

    reason = "zero_byte"


class TruncatedImageError(InvalidImageError):
    """The file starts like an image but its data ends early or is corrupt."""

    reason = "truncated"


class NotAnImageError(InvalidImageError):
    """Pillow recognises no image format in the bytes (text, HTML, archives...)."""

    reason = "not_an_image"


class ImageTooLargeError(InvalidImageError):
    """More pixels than Pillow's decompression-bomb guard allows."""

    reason = "too_large"


class FileTooLargeError(InvalidImageError):
    """More bytes than the per-file cap (`--max_file_bytes`): rejected before it is read."""

    reason = "file_too_large"


class MissingFileError(InvalidImageError):
    """Listed in a split CSV, but there is no such file on disk."""

    reason = "missing_file"


class TensorFlowDecodeError(InvalidImageError):
    """Pillow reads the JPEG but TensorFlow's decoder (the trainer's) does not."""

    reason = "tf_decode_failed"


class NotARegularFileError(InvalidImageError):
    """A named pipe, socket or device where a file was listed: never opened for reading."""

    reason = "not_a_regular_file"


@dataclasses.dataclass(frozen=True)
class StoredImage:
    """The bytes to store for one input, and what was done to get them.

    Attributes:
        jpeg: JPEG bytes, RGB, upright.
        sha256: hex SHA-256 of `jpeg`.
        width: pixels.
        height: pixels.
        conversion: empty when the original bytes were kept; otherwise what was
            converted, e.g. "PNG->JPEG", "L->RGB", "CMYK->RGB", "exif_orientation=6",
            joined with "+".
    """

    jpeg: bytes
    sha256: str
    width: int
    height: int
    conversion: str = ""


def check_file_size(size: int, max_bytes: int, path: str) -> None:
    """FileTooLargeError naming `path` and the flag when `size` is above `max_bytes`."""
    if size > max_bytes:
        raise FileTooLargeError(
            f"{path}: {size:,} bytes, above the limit of {max_bytes:,} bytes per file "
            "(--max_file_bytes); raise it if this really is an image"
        )


def read_at_most(f, max_bytes: int, path: str) -> bytes:
    """Reads an open binary file, never more than `max_bytes` + 1 bytes (a file may grow
    between its size check and its read)."""
    data = f.read(max_bytes + 1)
    check_file_size(len(data), max_bytes, path)
    return data


def read_bounded(path: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Reads a local or gs:// file whose size, checked before reading, is within `max_bytes`.

    Raises:
        FileTooLargeError: before a byte is read, when the file is larger.
        tf.errors.OpError, OSError: when it cannot be stat'ed or read.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see module docstring)

    check_file_size(tf.io.gfile.stat(path).length, max_bytes, path)
    with tf.io.gfile.GFile(path, "rb") as f:
        return read_at_most(f, max_bytes, path)


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256: the id of the stored bytes for leakage and duplicate checks."""
    return hashlib.sha256(data).hexdigest()


def normalise(data: bytes, *, check_with_tensorflow: bool = True) -> StoredImage:
    """Validates `data` and returns the JPEG bytes to store.

    Args:
        data: the raw bytes of one input file.
        check_with_tensorflow: decode kept JPEG bytes with TensorFlow too (see the
            module docstring); False only where TensorFlow is not available.

    Returns:
        The original bytes when they are a complete, upright RGB JPEG; otherwise
        the image converted once to an upright RGB JPEG.

    Raises:
        EmptyFileError, NotAnImageError, TruncatedImageError, ImageTooLargeError,
            TensorFlowDecodeError: all subclasses of InvalidImageError.
    """
    if not data:
        raise EmptyFileError("the file is empty (0 bytes)")
    image, source_format = _decode(data)
    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    rotated = orientation in range(2, 9)  # 1 is upright; 0 and junk values are ignored.
    if source_format == "JPEG" and image.mode == "RGB" and not rotated:
        if check_with_tensorflow:
            check_tensorflow_decodes(data, image.width, image.height)
        return StoredImage(
            jpeg=data, sha256=sha256_hex(data), width=image.width, height=image.height
        )
    return _convert_to_jpeg(image, source_format, orientation if rotated else None)


def _decode(data: bytes) -> tuple[Image.Image, str | None]:
    """(the decoded Pillow image, its format), or the InvalidImageError that says why not."""
    source_format = None
    try:
        image = Image.open(io.BytesIO(data))
        source_format = image.format
        image.load()
    except UnidentifiedImageError as error:
        # Pillow's own message names a memory address; say what kind of bytes these are
        # without quoting them (a report must not copy an input's content).
        raise NotAnImageError(
            f"no image format recognised in {len(data)} bytes{_describe_kind(data)}"
        ) from error
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated and corrupt data as OSError ("image file is
        # truncated", "broken data stream") and some header damage as SyntaxError.
        raise TruncatedImageError(
            f"{source_format or 'image'} data is incomplete or corrupt: {error}"
        ) from error
    return image, source_format


def _convert_to_jpeg(
    image: Image.Image, source_format: str | None, orientation: int | None
) -> StoredImage:
    """The one re-encode: upright (`orientation`: the EXIF value to apply, if any), RGB, JPEG."""
    conversions = []
    if source_format != "JPEG":
        conversions.append(f"{source_format}->JPEG")
    if orientation is not None:
        conversions.append(f"exif_orientation={orientation}")
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        conversions.append(f"{image.mode}->RGB")
        image = _to_rgb(image)
    output = io.BytesIO()
    # No `exif=`: the orientation is applied to the pixels, so it must not be
    # applied a second time by whoever reads the stored JPEG.
    image.save(output, format="JPEG", quality=NORMALISED_JPEG_QUALITY)
    jpeg = output.getvalue()
    return StoredImage(
        jpeg=jpeg,
        sha256=sha256_hex(jpeg),
        width=image.width,
        height=image.height,
        conversion="+".join(conversions),
    )


def _describe_kind(data: bytes) -> str:
    """' (text, e.g. an HTML error page)', ' (text)' or '': a category, never the bytes."""
    # A multi-byte character cut at the 512th byte is not a reason to call it binary.
    text = data[:512].decode("utf-8", errors="replace").rstrip("\ufffd")
    if "\ufffd" in text or not all(c.isprintable() or c.isspace() for c in text):
        return ""
    return " (text, e.g. an HTML error page)" if "<" in text else " (text)"


def crop_window(width: int, height: int) -> list[int]:
    """[y, x, h, w] of the centre half: skips scanlines above, columns left, rows below."""
    return [height // 4, width // 4, max(1, height // 2), max(1, width // 2)]


def _tensorflow_message(error: Exception) -> str:
    """TensorFlow's op error without the function-node and op-name decorations."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


def check_tensorflow_decodes(jpeg: bytes, width: int, height: int) -> None:
    """Decodes `jpeg` with TensorFlow in full and through a centre crop window.

    Raises:
        TruncatedImageError: TensorFlow fails and the data has no end-of-image marker.
        TensorFlowDecodeError: TensorFlow fails on data Pillow accepted.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (see module docstring)

    try:
        tf.io.decode_jpeg(jpeg, channels=3)
        tf.io.decode_and_crop_jpeg(jpeg, crop_window(width, height), channels=3)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        if _JPEG_END_OF_IMAGE not in jpeg:
            raise TruncatedImageError(
                "JPEG has no end-of-image marker and TensorFlow cannot decode it: "
                "the file was cut short"
            ) from error
        raise TensorFlowDecodeError(
            "Pillow reads this JPEG but TensorFlow's decoder, which the trainer and the "
            f"exported model use, fails on it ({_tensorflow_message(error)}): its scan data "
            "is damaged"
        ) from error


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts any Pillow mode to RGB; transparent pixels become white, not black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping at 255.
        image = image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")
