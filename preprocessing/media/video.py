"""Reading videos: which frames to look at, decoded upright, with a clear reason when a file is bad.

Scoring videos (`trainer.predict`, `trainer.batch_score`) and building training
data from videos use this module, so the frames judged and the frames learned
from are sampled and decoded the same way. PyAV decodes (FFmpeg ships inside
its wheel: mp4, mov, webm, avi, mkv with H.264, HEVC, VP8/9, AV1, MPEG-4...).

Public API:

- `probe(source, max_pixels=DEFAULT_MAX_PIXELS) -> VideoInfo`: duration, frame
  rate, upright size, rotation, codec, without decoding a frame.
- `plan_times(info, frames_per_second=None, max_frames=None, hard_cap=HARD_CAP)
  -> list[float]`: the time stamps to sample (see `plan_times` for the rule).
- `read_frames(source, times, max_pixels=...) -> Iterator[Frame]`: decodes the
  frame shown at each of `times` (the first frame whose time is at or after it),
  rotated upright. `times` may be any sorted subset of a plan: it seeks to the
  first, so a batch job can split one video's plan into chunks on different
  workers and get exactly the frames one sequential read gets.
- `Frame`: `index` (frame number: its place in presentation order, counted from
  the stream's packet time stamps, so variable-frame-rate frames never share one), `time`
  (seconds), `image` (uint8 RGB [height, width, 3], upright).
- `looks_like_video(head)`, `VIDEO_EXTENSIONS`: telling videos from photos.
- `VideoError` and its subclasses, each with a stable `reason` code:
  `not_a_video`, `truncated`, `zero_frames`, `unsupported_codec`, `huge_frame`.
  `read_frames` raises `TruncatedVideoError` only after yielding every frame it
  could decode, so a caller may keep those and report the file as truncated.

`source` is a local path, a `gs://` path (read through `tf.io.gfile`) or a
seekable binary file object.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
import dataclasses
import math

import numpy as np

VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi")
# No video is sampled at more frames than this, whatever the flags say: bounds the
# time and memory one input can take (at ~1 s per 720p frame on one core, ~4 min).
HARD_CAP = 256
DEFAULT_MAX_FRAMES = 32
# Sampling rates above this plan the same frames as this (see `plan_times`).
MAX_SAMPLING_RATE = 1e6
# Frames (and photos) with more pixels than this are refused: 8192 x 8192, beyond
# 8K video (33 MP) and most cameras. Decoding one costs 200 MB as RGB.
DEFAULT_MAX_PIXELS = 8192 * 8192


class VideoError(Exception):
    """A video that cannot be sampled; subclasses name the reason (`reason`)."""

    reason = "bad_video"


class NotAVideoError(VideoError):
    reason = "not_a_video"


class TruncatedVideoError(VideoError):
    reason = "truncated"


class ZeroFramesError(VideoError):
    reason = "zero_frames"


class UnsupportedCodecError(VideoError):
    reason = "unsupported_codec"


class HugeFrameError(VideoError):
    reason = "huge_frame"


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns from the container, before decoding."""

    duration: float  # seconds
    frame_rate: float  # average frames per second
    width: int  # upright, after rotation
    height: int
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    codec: str
    container: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Frame:
    index: int
    time: float
    image: np.ndarray


def looks_like_video(head: bytes) -> bool:
    """True when the first bytes are an MP4/MOV, Matroska/WebM or AVI container's."""
    return (
        head[4:8] == b"ftyp"
        or head[4:8] in (b"moov", b"mdat", b"wide", b"free")
        or head[:4] == b"\x1a\x45\xdf\xa3"
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
    )


def _open(source):
    import av  # Lazy: keeps this module cheap to import.

    if isinstance(source, str) and source.startswith("gs://"):
        import tensorflow as tf  # Only for Cloud Storage paths.

        source = tf.io.gfile.GFile(source, "rb")
    try:
        return av.open(source, mode="r")
    except av.error.FFmpegError as error:
        head = _head(source)
        if looks_like_video(head):
            raise TruncatedVideoError(
                "the file starts like a video container but cannot be opened: truncated or "
                f"corrupt ({_ffmpeg_message(error)})"
            ) from None
        raise NotAVideoError(
            f"not a video file FFmpeg can read ({_ffmpeg_message(error)})"
        ) from None


def _head(source) -> bytes:
    try:
        if isinstance(source, str):
            with open(source, "rb") as f:
                return f.read(16)
        source.seek(0)
        return source.read(16)
    except OSError:
        return b""


def _ffmpeg_message(error) -> str:
    # FFmpeg errors carry the file name too; the caller names the file already.
    return getattr(error, "strerror", None) or type(error).__name__


def _video_stream(container):
    if not container.streams.video:
        raise NotAVideoError(
            f"the {container.format.name} file has no video stream "
            f"({len(container.streams.audio)} audio stream(s))"
        )
    stream = container.streams.video[0]
    codec = stream.codec_context
    if codec is None or not getattr(codec, "name", None) or codec.name == "none":
        raise UnsupportedCodecError(
            "the video stream's codec is unknown to this FFmpeg build; re-encode it, e.g. "
            "`ffmpeg -i in -c:v libx264 out.mp4`"
        )
    return stream


def _rotation(stream) -> int:
    """The legacy `rotate` tag; the first frame's display matrix takes precedence."""
    tag = stream.metadata.get("rotate")
    if tag is not None:
        try:
            return int(tag) % 360
        except ValueError:
            pass
    return 0


def probe(source, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoInfo:
    """Reads the container's header; decodes at most one frame (for its rotation).

    Raises:
        NotAVideoError, TruncatedVideoError, UnsupportedCodecError, ZeroFramesError,
        HugeFrameError (all VideoError).
    """
    container = _open(source)
    try:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > max_pixels:
            raise HugeFrameError(
                f"frames are {width}x{height} = {width * height / 1e6:.0f} MP, above the "
                f"{max_pixels / 1e6:.0f} MP limit (--max_frame_pixels)"
            )
        rate = _frame_rate(stream)
        duration = _header_duration(container, stream)
        rotation = _rotation(stream)
        first, last_time = _first_frame(container, stream, duration)
        rotation = (first.rotation or rotation) % 360
        if duration is None or duration <= 0:
            duration = last_time or (1.0 / rate)
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(
            duration=float(duration),
            frame_rate=rate,
            width=int(width),
            height=int(height),
            rotation=int(rotation),
            codec=stream.codec_context.name,
            container=container.format.name,
        )
    finally:
        container.close()


def _frame_rate(stream) -> float:
    """Average frames per second; 25 when the container states none."""
    return float(stream.average_rate or stream.guessed_rate or 0) or 25.0


def _header_duration(container, stream) -> float | None:
    """Seconds, from the stream's header or else the container's; None when neither says."""
    import av

    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _first_frame(container, stream, duration: float | None):
    """(first decoded frame, end time of the last packet or None).

    The display matrix reaches PyAV on frames; the first one also proves the
    stream decodes. Packets are then walked (no decoding) for the last time stamp
    when the header has no duration (common in WebM).

    Raises:
        TruncatedVideoError, UnsupportedCodecError: no frame decodes.
        ZeroFramesError: the stream holds no packet and no duration.
    """
    import av

    last_time = None
    first = None
    packets = 0
    try:
        for packet in container.demux(stream):
            packets += packet.size > 0
            for frame in packet.decode():
                first = frame
                break
            if first is not None:
                break
        if duration is None or duration <= 0:
            for packet in container.demux(stream):
                if packet.pts is not None:
                    end = (packet.pts + (packet.duration or 0)) * stream.time_base
                    last_time = max(last_time or 0.0, float(end))
    except av.error.FFmpegError as error:
        if first is None:
            raise _decode_error(error) from None
    if first is None and (packets or (duration or 0) > 0):
        raise TruncatedVideoError(
            f"no frame decodes from {packets} packet(s) of a {duration or 0:.1f} s stream: "
            "truncated or corrupt"
        )
    if first is None:
        raise ZeroFramesError("the video stream holds no frame")
    return first, last_time


def _decode_error(error) -> VideoError:
    import av

    if isinstance(error, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        return UnsupportedCodecError(f"FFmpeg cannot decode this stream ({_ffmpeg_message(error)})")
    return TruncatedVideoError(f"decoding failed ({_ffmpeg_message(error)})")


def plan_times(
    info: VideoInfo,
    frames_per_second: float | None = None,
    max_frames: int | None = None,
    hard_cap: int = HARD_CAP,
) -> list[float]:
    """The time stamps (seconds) to sample.

    - `frames_per_second` only: every 1/fps seconds from 0, up to the hard cap.
    - `max_frames` only (or neither: DEFAULT_MAX_FRAMES): that many, evenly spread
      (the middle of equal slices of the duration), so a long video is covered
      end to end.
    - both: the fps grid, thinned evenly to at most `max_frames`.
    Never more than `hard_cap` frames, nor more than the video has.
    """
    check_frames_per_second(frames_per_second)
    if max_frames is not None and not 1 <= max_frames <= hard_cap:
        raise ValueError(f"max_frames must be in [1, {hard_cap}] (the hard cap); got {max_frames}.")
    available = max(1, int(math.floor(info.duration * info.frame_rate + 1e-6)))
    if frames_per_second is None:
        count = min(max_frames or DEFAULT_MAX_FRAMES, available, hard_cap)
        return [round((k + 0.5) * info.duration / count, 6) for k in range(count)]
    # The grid (every 1/fps s) is never built: its size is known arithmetically and at
    # most `limit` of its points are computed, so --frames_per_second=1e9 on a long
    # video costs what 1 fps does (issue 20: the grid once took 5.3 GB).
    # Above a million per second the grid is far finer than any video's frames; the
    # clamp keeps duration x rate finite (1e308 would overflow).
    rate = min(frames_per_second, MAX_SAMPLING_RATE)
    step = 1.0 / rate
    size = max(1, math.ceil(info.duration * rate - 1e-9))
    limit = min(max_frames or hard_cap, hard_cap)
    if size <= limit:
        return [round(k * step, 6) for k in range(size)]
    return [round((k * size // limit) * step, 6) for k in range(limit)]


def check_frames_per_second(value: float | None) -> None:
    """Raises ValueError unless `value` is None or a finite number > 0 (NaN and inf are not)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"frames_per_second must be a finite number > 0; got {value} "
            "(e.g. --frames_per_second=2)."
        )


def read_frames(
    source, times: Sequence[float], max_pixels: int = DEFAULT_MAX_PIXELS
) -> Iterator[Frame]:
    """Yields the frame on screen at each time in `times` (sorted), upright, once each.

    Raises:
        VideoError subclasses; TruncatedVideoError after the frames decoded before
        the break (or when the stream ends before the last requested time by more
        than a second).
    """
    targets = sorted(float(t) for t in times)
    if not targets:
        return
    container = _open(source)
    try:
        stream = _video_stream(container)
        if stream.codec_context.width * stream.codec_context.height > max_pixels:
            raise HugeFrameError(
                f"frames are {stream.codec_context.width}x{stream.codec_context.height}, above "
                f"the {max_pixels / 1e6:.0f} MP limit (--max_frame_pixels)"
            )
        rate = _frame_rate(stream)
        start = targets[0]
        order = []
        if stream.time_base is not None:
            order = _presentation_order(container, stream, targets[-1] + _ORDER_MARGIN)
            # To the key frame before `start` (or back to the beginning after counting
            # the packets): decoding from there gives the frames a sequential read
            # gives (module docstring).
            container.seek(
                int(max(0.0, start - 1.0 / rate) / stream.time_base),
                stream=stream,
                backward=True,
                any_frame=False,
            )
        stream.thread_type = "AUTO"
        yield from _frames_at(container, stream, targets, _Decoding(rate, order, max_pixels))
    finally:
        container.close()


# Packets are counted this many seconds past the last requested time: decode order
# puts a few B-frames' packets after later ones, never seconds later.
_ORDER_MARGIN = 5.0


@dataclasses.dataclass(frozen=True)
class _Decoding:
    """What `_frames_at` needs besides the stream: the frame rate, the order, the limit."""

    rate: float
    order: list[int]  # Sorted time stamps of the stream's packets, up to the last target.
    max_pixels: int

    def index(self, frame) -> int:
        """The frame's position in presentation order: packets shown before it.

        Not round(time x average rate): in variable-frame-rate video two frames
        can round to one number (issue 20), and a chunk read after a seek cannot
        count the frames it skipped. Counting packet time stamps gives every frame
        its own number, the same in every chunk.
        """
        stamp = _stamp(frame)
        if stamp is None or not self.order:
            return int(round(frame.time * self.rate))
        return bisect.bisect_left(self.order, stamp)


def _stamp(item) -> int | None:
    """A packet's or frame's presentation time stamp (time-base units), or its decode stamp."""
    return item.pts if item.pts is not None else item.dts


def _presentation_order(container, stream, until: float) -> list[int]:
    """The sorted time stamps of the stream's packets up to `until` seconds (no decoding)."""
    import av

    stamps = []
    limit = until / stream.time_base
    try:
        for packet in container.demux(stream):
            stamp = _stamp(packet)
            if packet.size == 0 or stamp is None:
                continue
            if (packet.dts if packet.dts is not None else stamp) > limit:
                break
            stamps.append(stamp)
    except av.error.FFmpegError:
        pass  # The decoding pass that follows meets the same damage and names it.
    return sorted(stamps)


def _frames_at(container, stream, targets: list[float], decoding: _Decoding) -> Iterator[Frame]:
    """Decodes from the current position and yields the frame shown at each target time.

    Raises:
        HugeFrameError: a decoded frame is larger than `decoding.max_pixels` (checked
            on its size before it becomes an array), after the frames before it.
    """
    import av

    tolerance = 0.5 / decoding.rate  # A target half a frame before a frame's time is that frame's.
    position = 0
    decoded_any = False
    last, last_yielded = None, False
    try:
        for frame in container.decode(stream):
            decoded_any = True
            _check_size(frame, decoding.max_pixels)
            if frame.time is None:
                continue
            last, last_yielded = frame, False
            if frame.time + tolerance < targets[position]:
                continue
            yield _to_frame(frame, decoding)
            last_yielded = True
            while position < len(targets) and targets[position] <= frame.time + tolerance:
                position += 1
            if position == len(targets):
                return
    except av.error.FFmpegError as error:
        raise _decode_error(error) from None
    if not decoded_any:
        raise ZeroFramesError("the video stream holds no decodable frame")
    if last is None:
        return
    # Targets inside the last frame's display time (the plan spreads them up to the
    # container's duration) are that frame; one well after it means the file ends early.
    if not last_yielded and targets[position] <= last.time + 1.5 / decoding.rate:
        yield _to_frame(last, decoding)
    if targets[-1] > last.time + 1.5 / decoding.rate:
        raise TruncatedVideoError(
            f"the stream ends at {last.time:.2f} s, before {targets[-1]:.2f} s: the "
            "file was cut short or its header claims more than it holds"
        )


def _check_size(frame, max_pixels: int) -> None:
    """Refuses a frame larger than the limit before it is converted (a 12000x12000 MJPEG
    frame after 64x64 ones passes the header check: issue 20)."""
    if frame.width * frame.height > max_pixels:
        raise HugeFrameError(
            f"a frame at {frame.time or 0:.2f} s is {frame.width}x{frame.height}, above the "
            f"{max_pixels / 1e6:.2f} MP limit (--max_frame_pixels), though the stream's "
            "header says smaller"
        )


def _to_frame(frame, decoding: _Decoding) -> Frame:
    image = frame.to_ndarray(format="rgb24")
    if frame.rotation:
        # PyAV's rotation is counter-clockwise for display; np.rot90 turns counter-clockwise.
        image = np.ascontiguousarray(np.rot90(image, k=(frame.rotation // 90) % 4))
    return Frame(index=decoding.index(frame), time=float(frame.time), image=image)
