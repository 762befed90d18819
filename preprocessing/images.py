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

Pure Python + Pillow: no TensorFlow, so it is cheap to import in Beam workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io

from PIL import Image, ImageOps, UnidentifiedImageError

# Quality of the one re-encode that non-RGB-JPEG inputs get: high enough that
# the conversion adds little of its own compression trace.
NORMALISED_JPEG_QUALITY = 95
# EXIF tag 0x0112: how the camera was held; 1 means "upright already".
_EXIF_ORIENTATION = 0x0112
_JPEG_END_OF_IMAGE = b"\xff\xd9"


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


class MissingFileError(InvalidImageError):
    """Listed in a split CSV, but there is no such file on disk."""

    reason = "missing_file"


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


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256: the id of the stored bytes for leakage and duplicate checks."""
    return hashlib.sha256(data).hexdigest()


def normalise(data: bytes) -> StoredImage:
    """Validates `data` and returns the JPEG bytes to store.

    Args:
        data: the raw bytes of one input file.

    Returns:
        The original bytes when they are a complete, upright RGB JPEG; otherwise
        the image converted once to an upright RGB JPEG.

    Raises:
        EmptyFileError, NotAnImageError, TruncatedImageError, ImageTooLargeError:
            all subclasses of InvalidImageError.
    """
    if not data:
        raise EmptyFileError("the file is empty (0 bytes)")
    source_format = None
    try:
        image = Image.open(io.BytesIO(data))
        source_format = image.format
        image.load()
    except UnidentifiedImageError as error:
        # Pillow's own message names a memory address; the first bytes say more.
        raise NotAnImageError(
            f"no image format recognised in {len(data)} bytes starting {data[:16]!r}"
        ) from error
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        # Pillow reports truncated and corrupt data as OSError ("image file is
        # truncated", "broken data stream") and some header damage as SyntaxError.
        raise TruncatedImageError(
            f"{source_format or 'image'} data is incomplete or corrupt: {error}"
        ) from error

    orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    rotated = orientation in range(2, 9)  # 1 is upright; 0 and junk values are ignored.
    if source_format == "JPEG" and image.mode == "RGB" and not rotated:
        # Pillow decodes a JPEG that lost its tail as long as the scan data it
        # needs is there; TensorFlow's decoder is stricter, so require the
        # end-of-image marker (possibly followed by padding) before keeping bytes.
        if _JPEG_END_OF_IMAGE not in data[-4096:]:
            raise TruncatedImageError("JPEG has no end-of-image marker: the file was cut short")
        return StoredImage(
            jpeg=data, sha256=sha256_hex(data), width=image.width, height=image.height
        )

    conversions = []
    if source_format != "JPEG":
        conversions.append(f"{source_format}->JPEG")
    if rotated:
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
