"""An upload, streamed into a private folder under a name of our own, within a size limit.

`receive_upload` feeds the request body, chunk by chunk as it arrives, to
python-multipart's streaming parser, counting bytes: past `max_bytes` it stops
reading and raises `UploadError(413)`, so an oversized upload is refused
before it is read whole (and at once when its Content-Length says so). The
file part (form field `file`) goes straight to disk in the request's private
folder, under a fixed name: the client's file name is kept only as a label
for the record (`display_name`), never used as a path.

`sniff` tells what the bytes are from their first bytes (not from the name or
the declared type); `check_type` refuses what is neither an image nor a video
(415, naming what was found) and a declared type that contradicts the content
(400, naming both).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
import dataclasses
import os
import re

from python_multipart.multipart import MultipartParser, parse_options_header

from preprocessing.media import video

FILE_FIELD = "file"
# Form fields other than the file are small options ("explain=1").
MAX_FIELD_BYTES = 1024

# (magic prefix or predicate, kind, what it is): the first match names the content.
_SIGNATURES = (
    (lambda h: h.startswith(b"\xff\xd8\xff"), "image", "a JPEG image"),
    (lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), "image", "a PNG image"),
    (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", "image", "a WebP image"),
    (lambda h: h.startswith((b"GIF87a", b"GIF89a")), "image", "a GIF image"),
    (lambda h: h.startswith(b"BM"), "image", "a BMP image"),
    (lambda h: h.startswith((b"II*\x00", b"MM\x00*")), "image", "a TIFF image"),
    (video.looks_like_video, "video", "a video"),
    (lambda h: h.startswith(b"%PDF"), "other", "a PDF document"),
    (lambda h: h.startswith(b"PK\x03\x04"), "other", "a ZIP archive (or Office document)"),
    (lambda h: h.startswith(b"\x1f\x8b"), "other", "a gzip archive"),
    (lambda h: h.startswith(b"\x7fELF"), "other", "an executable (ELF)"),
    (
        lambda h: h.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml", b"<svg")),
        "other",
        "HTML/XML/SVG text",
    ),
)


class UploadError(Exception):
    """A refused upload: `status` is the HTTP status, `reason` a stable code, the message
    one line for the client."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclasses.dataclass
class Upload:
    """The received file (`path`, inside the request's folder) and the form's other fields."""

    path: str
    size: int
    display_name: str
    declared_type: str
    fields: dict[str, str]


def display_name(filename: str | None) -> str:
    """The client's file name as a label: its last component, printable, at most 120 chars."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(c for c in name if c.isprintable())[:120].strip()
    return name or "upload"


def sniff(head: bytes) -> tuple[str, str]:
    """(kind: image/video/other, description) of content starting with `head`."""
    for matches, kind, what in _SIGNATURES:
        if matches(head):
            return kind, what
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "other", "plain text"
    return "other", "unknown binary data"


def check_type(path: str, declared: str) -> str:
    """The content's kind ("image" or "video"), or UploadError saying what was found."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise UploadError(400, "zero_byte", "the uploaded file is empty")
    kind, what = sniff(head)
    if kind == "other":
        raise UploadError(
            415,
            "unsupported_type",
            f"unsupported file: found {what}; upload a photo (JPEG, PNG, WebP, ...) or a video "
            f"(MP4, MOV, WebM, AVI, MKV)",
        )
    family = declared.split("/")[0].lower()
    if family in ("image", "video") and family != kind:
        raise UploadError(
            400,
            "type_mismatch",
            f"the upload says it is {declared} but its content is {what}",
        )
    return kind


async def receive_upload(
    headers, body: AsyncIterator[bytes], folder: str, max_bytes: int
) -> Upload:
    """Streams a multipart/form-data body into `folder`/upload; see the module docstring."""
    content_type, params = parse_options_header(headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise UploadError(
            415,
            "not_multipart",
            "send the file as multipart/form-data with the form field 'file' "
            "(curl -F file=@photo.jpg ...)",
        )
    length = headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise UploadError(413, "too_large", _too_large(max_bytes, int(length)))
    receiver = _PartWriter(os.path.join(folder, "upload"))
    parser = MultipartParser(params[b"boundary"], receiver.callbacks())
    received = 0
    try:
        async for chunk in body:
            received += len(chunk)
            if received > max_bytes:
                raise UploadError(413, "too_large", _too_large(max_bytes))
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as error:  # noqa: BLE001  python-multipart raises several kinds.
        raise UploadError(400, "bad_form", f"the form could not be parsed ({error})") from None
    finally:
        receiver.close()
    if receiver.file_size is None:
        raise UploadError(400, "no_file", "the form has no field 'file' holding a file")
    return Upload(
        receiver.path,
        receiver.file_size,
        display_name(receiver.filename),
        receiver.file_type,
        receiver.fields,
    )


def _too_large(max_bytes: int, length: int | None = None) -> str:
    size = f" ({length / 1e6:.1f} MB)" if length else ""
    return f"upload too large{size}: the limit is {max_bytes / 1e6:.1f} MB (--max_upload_bytes)"


class _PartWriter:
    """python-multipart callbacks: the `file` part to disk, small fields to memory."""

    def __init__(self, path: str):
        self.path = path
        self.file_size: int | None = None
        self.filename: str | None = None
        self.file_type = ""
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._out = None
        self._buffer = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self):
        self._headers, self._field, self._value = {}, b"", b""
        self._buffer = bytearray()

    def _header_field(self, data, start, end):
        self._field += data[start:end]

    def _header_value(self, data, start, end):
        self._value += data[start:end]

    def _header_end(self):
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self):
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == FILE_FIELD and b"filename" in options and self._out is None:
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self.file_type = self._headers.get(b"content-type", b"").decode("latin-1").strip()
            self._out = open(self.path, "xb")  # noqa: SIM115  Closed in _end / close.
            self.file_size = 0

    def _data(self, data, start, end):
        if self._name == FILE_FIELD and self._out is not None and not self._out.closed:
            self._out.write(data[start:end])
            self.file_size += end - start
        elif len(self._buffer) < MAX_FIELD_BYTES:
            self._buffer += data[start:end][: MAX_FIELD_BYTES - len(self._buffer)]

    def _end(self):
        if self._name == FILE_FIELD and self._out is not None:
            self._out.close()
        elif self._name:
            self.fields[self._name] = self._buffer.decode("utf-8", "replace")

    def close(self):
        if self._out is not None:
            self._out.close()
