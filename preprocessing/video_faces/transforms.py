"""The Beam steps that turn listed videos into face-crop examples and a ledger.

  VideoSource ─► PlanVideos ─good─► GroupBySha256 ─► ResolveDuplicates ─► CutChunks
        │            │ (hash, probe,                      │ (a copy in a      │ (video, sample
        │            │  sample times)                     │  later split)     │  times) x N
        │            └─bad──► RejectUnplayable ──┐        ▼                   ▼
        │                                        │     ledger          SpreadChunks (Reshuffle)
        └─(listing problem)──► RejectListed ─────┤                            │
                                                 │                  DecodeChunks: decode the
                                                 │                  chunk's frames, find faces
                                                 │                  (--face_detector), align
                                                 │                            │
                                                 │     JoinByVideo (CoGroupByKey: plan + chunks)
                                                 │                            │
                                                 └── ledger ◄── AssembleVideos ─► examples
                                                                (order frames, track faces,
                                                                 reject no_face / broken)

Every input video ends as exactly one ledger record, "written" (with its number
of frames, faces and tracks) or "rejected" with a reason, so "videos read =
videos written + rejects" holds by construction; the builder turns the ledger
into rejects.jsonl and the summary (`preprocessing.video_faces.summary`). Each reject
reason has its Beam counter (`rejected_<reason>`), as in the image build.

Why chunks: decoding and face detection cost about a second per frame on a CPU,
so one long video sampled at 256 frames would hold one worker for minutes. The
video's sampling plan is cut into chunks of `chunk_frames` times that any worker
takes (`preprocessing.media.video.read_frames` seeks to a chunk's first time and gets
exactly the frames one sequential read gets), as batch scoring does. Only the
small per-chunk results (face boxes and crops) are grouped back per video, where
faces are linked into tracks (`preprocessing.media.faces.track_faces`) over the whole
video.

Faces are found and cut out with `preprocessing.media.faces` (RetinaFace or MTCNN,
`--face_detector`, a chunk's frames in one detector call; the canonical TEMPLATE)
at `image_size` pixels, exactly as prediction cuts them, and stored
as JPEG (quality 95). Frames are sampled with `preprocessing.media.video.plan_times`,
the rule prediction uses.

A video that cannot be read to the end of its plan (truncated, corrupt) is
rejected whole, even when its first frames decoded: a damaged file in a
training set is a download to repeat, not data to keep.

Leakage: videos with the same SHA-256 of their bytes are grouped; the first by
(split order, id) is the original; a copy in a later split is rejected
(`duplicate_across_splits`), since its frames would otherwise be on both sides;
a copy in the same split is kept and counted. The same bytes under both labels
(in one split or two) are rejected, every copy, as `same_bytes_two_labels`
(`preprocessing.building.ledger.label_conflict`), before any frame is decoded.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import math
import os
import posixpath
import stat

import apache_beam as beam
from apache_beam.metrics import Metrics
from PIL import Image

from preprocessing import schema
from preprocessing.building import ledger
from preprocessing.media import faces as faces_lib
from preprocessing.media import images, video
from preprocessing.video_faces import sources as video_sources

METRICS_NAMESPACE = "video_faces"
DEFAULT_IMAGE_SIZE = 256
DEFAULT_MIN_FRAMES = 8
DEFAULT_MAX_FACES_PER_FRAME = 1
DEFAULT_CHUNK_FRAMES = 8
NO_FACE = "no_face"
FACE_TOO_SMALL = "face_too_small"
_READ_BLOCK = 8 << 20


class EmptyVideoError(video.VideoError):
    reason = "zero_byte"


class TooShortError(video.VideoError):
    reason = "too_short"


class VanishedError(video.VideoError):
    reason = "missing_file"


class NotARegularFileError(video.VideoError):
    reason = "not_a_regular_file"


@dataclasses.dataclass(frozen=True)
class FrameOptions:
    """How frames are sampled and faces cut out; every field but `chunk_frames` changes content.

    Attributes:
        frames_per_video: frames spread evenly over each video (default
            video.DEFAULT_MAX_FRAMES when `frames_per_second` is not set either).
        frames_per_second: sample at this rate instead (thinned to
            `frames_per_video` when both are set).
        frame_cap: never more frames per video than this (at most video.HARD_CAP).
        min_frames: a video holding fewer frames is rejected as `too_short`.
        image_size: side of the face crops (the training images' size).
        detector: which face detector finds faces (`faces.FACE_DETECTORS`, --face_detector).
        min_face_size, min_face_confidence: as `preprocessing.media.faces.FaceDetector`.
        max_faces_per_frame: the largest faces kept per frame. 1 by default: in
            FaceForensics++ and Celeb-DF one face per fake video is manipulated, and
            a bystander's real face labelled "fake" would teach the wrong thing.
        max_frame_pixels: larger frames are rejected (`huge_frame`).
        chunk_frames: sampled frames per work item (how a video spreads over workers).
    """

    frames_per_video: int | None = None
    frames_per_second: float | None = None
    frame_cap: int = video.HARD_CAP
    min_frames: int = DEFAULT_MIN_FRAMES
    image_size: int = DEFAULT_IMAGE_SIZE
    detector: str = faces_lib.DEFAULT_FACE_DETECTOR
    min_face_size: int = faces_lib.DEFAULT_MIN_FACE_SIZE
    min_face_confidence: float = faces_lib.DEFAULT_MIN_CONFIDENCE
    max_faces_per_frame: int = DEFAULT_MAX_FACES_PER_FRAME
    max_frame_pixels: int = video.DEFAULT_MAX_PIXELS
    chunk_frames: int = DEFAULT_CHUNK_FRAMES

    def validate(self) -> None:
        """Raises ValueError naming the bad value and what is accepted."""
        if not 1 <= self.frame_cap <= video.HARD_CAP:
            raise ValueError(f"--frame_cap={self.frame_cap} is not in [1, {video.HARD_CAP}].")
        if self.frames_per_video is not None and not 1 <= self.frames_per_video <= self.frame_cap:
            raise ValueError(
                f"--frames_per_video={self.frames_per_video} is not in [1, --frame_cap="
                f"{self.frame_cap}]."
            )
        video.check_frames_per_second(self.frames_per_second)
        for name in ("min_frames", "image_size", "max_faces_per_frame", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)} must be >= 1.")
        if self.max_frame_pixels < 1:
            raise ValueError(f"--max_frame_pixels={self.max_frame_pixels} must be >= 1.")
        self.face_detector()  # Validates the detector's options.

    def content(self) -> dict:
        """The options that change the examples (for the build's input fingerprint)."""
        values = dataclasses.asdict(self)
        del values["chunk_frames"]
        return values

    def face_detector(self) -> faces_lib.FaceDetector:
        return faces_lib.FaceDetector(
            min_face_size=self.min_face_size,
            min_confidence=self.min_face_confidence,
            max_faces=self.max_faces_per_frame,
            detector=self.detector,
        )

    def plan(self, info: video.VideoInfo) -> list[float]:
        """The time stamps to sample: `video.plan_times`, the prediction rule."""
        return video.plan_times(
            info, self.frames_per_second, self.frames_per_video, hard_cap=self.frame_cap
        )


@dataclasses.dataclass(frozen=True)
class PlannedVideo:
    """A video that opened, with what the chunks and the ledger need."""

    source: video_sources.VideoSource
    sha256: str
    times: tuple[float, ...]
    duration: float
    frame_rate: float
    duplicate: str = ""
    duplicate_of: str = ""


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """One face of one sampled frame: where it was, and its aligned crop (JPEG)."""

    face_number: int
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    confidence: float
    jpeg: bytes


@dataclasses.dataclass(frozen=True)
class DecodedFrame:
    index: int
    time: float
    faces: tuple[FaceCrop, ...]
    too_small: int


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    """What one chunk gave: its frames, or why the video broke (reason, message)."""

    chunk: int
    frames: tuple[DecodedFrame, ...]
    error: tuple[str, str] | None = None


def _count(name: str) -> None:
    Metrics.counter(METRICS_NAMESPACE, name).inc()


def _ledger(source: video_sources.VideoSource, outcome: str, **fields) -> dict:
    """`ledger.ledger_record` plus the video's source name and frame/face/track counts."""
    counts = {key: fields.pop(key, 0) for key in ("frames", "faces", "tracks")}
    record = ledger.ledger_record(source, outcome, **fields)
    record.update(source=source.source, **counts)
    return record


def _sha256_of_file(path: str) -> tuple[str, int]:
    """(hex SHA-256, size) of a local or gs:// file, read in blocks.

    Local files are opened non-blocking and checked with fstat on the open
    descriptor, as the image build does: a file replaced by a named pipe after
    listing cannot hang the worker.
    """
    digest = hashlib.sha256()
    size = 0
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel

        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                while block := f.read(_READ_BLOCK):
                    digest.update(block)
                    size += len(block)
        except tf.errors.NotFoundError:
            raise VanishedError(f"{path} vanished after listing") from None
        return digest.hexdigest(), size
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise VanishedError(f"{path} vanished after listing") from None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO):
            raise NotARegularFileError(f"{path} cannot be opened as a file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise NotARegularFileError(
                f"{path} is not a regular file (a named pipe, socket or device)"
            )
        while block := f.read(_READ_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def plan_video(source: video_sources.VideoSource, options: FrameOptions) -> PlannedVideo:
    """Hashes, probes and plans one video.

    Raises:
        video.VideoError (a subclass naming the reason): the video cannot give examples.
        OSError: other I/O errors propagate, so that the runner retries them.
    """
    sha256, size = _sha256_of_file(source.path)
    if size == 0:
        raise EmptyVideoError("the file is empty (0 bytes)")
    info = video.probe(source.path, max_pixels=options.max_frame_pixels)
    available = int(math.floor(info.duration * info.frame_rate + 1e-6))
    if available < options.min_frames:
        raise TooShortError(
            f"the video holds {available} frame(s) ({info.duration:.2f} s at "
            f"{info.frame_rate:.1f} fps), fewer than --min_frames={options.min_frames}"
        )
    return PlannedVideo(
        source=source,
        sha256=sha256,
        times=tuple(options.plan(info)),
        duration=info.duration,
        frame_rate=info.frame_rate,
    )


def _reject_listed(source: video_sources.VideoSource) -> dict:
    _count(f"rejected_{source.problem}")
    detail = video_sources.PROBLEM_DETAILS.get(source.problem, "")
    if source.note:
        detail = f"{detail} ({source.note})" if detail else source.note
    return _ledger(source, ledger.REJECTED, reason=source.problem, detail=detail)


def _reject_unplayable(failure) -> dict:
    """with_exception_handling's `(input, (exc_type, repr, traceback))` -> a ledger record."""
    source, (exc_type, exc_repr, _) = failure
    reason = getattr(exc_type, "reason", video.VideoError.reason)
    _count(f"rejected_{reason}")
    return _ledger(source, ledger.REJECTED, reason=reason, detail=exc_repr)


class ResolveDuplicatesFn(beam.DoFn):
    """One SHA-256 group -> the videos to decode (main) and ledger records of dropped copies."""

    def process(self, element):
        _, members = element
        members = sorted(members, key=lambda m: (schema.SPLITS.index(m.source.split), m.source.id))
        conflict = ledger.label_conflict([member.source for member in members])
        if conflict:
            for planned in members:  # Rejected before any frame is decoded.
                yield _rejected_copy(planned, ledger.SAME_BYTES_TWO_LABELS, conflict)
            return
        first = members[0]
        for index, planned in enumerate(members):
            if not index:
                yield planned
                continue
            if planned.source.split == first.source.split:
                _count(ledger.DUPLICATE_WITHIN_SPLIT)
                yield dataclasses.replace(
                    planned, duplicate=ledger.DUPLICATE_WITHIN_SPLIT, duplicate_of=first.source.id
                )
                continue
            _count(ledger.DUPLICATE_ACROSS_SPLITS)
            yield _rejected_copy(
                planned,
                ledger.DUPLICATE_ACROSS_SPLITS,
                f"same bytes as {first.source.id} ({first.source.split}); its frames "
                "would be in two splits",
                duplicate=ledger.DUPLICATE_ACROSS_SPLITS,
                duplicate_of=first.source.id,
            )


def _rejected_copy(planned: PlannedVideo, reason: str, detail: str, **duplicate):
    """The ledger output rejecting one copy of a video's bytes, counted under its reason."""
    _count(f"rejected_{reason}")
    record = _ledger(
        planned.source,
        ledger.REJECTED,
        reason=reason,
        detail=detail,
        sha256=planned.sha256,
        source_sha256=planned.sha256,
        **duplicate,
    )
    return beam.pvalue.TaggedOutput("ledger", record)


def _cut_chunks(planned: PlannedVideo, chunk_frames: int):
    """(video id, (chunk number, path, times)) per chunk of the sampling plan."""
    for number, start in enumerate(range(0, len(planned.times), chunk_frames)):
        _count("video_chunks")
        yield (
            planned.source.id,
            (number, planned.source.path, planned.times[start : start + chunk_frames]),
        )


def encode_jpeg(pixels) -> bytes:
    """A face crop as stored: JPEG at the quality the image build re-encodes at."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=images.NORMALISED_JPEG_QUALITY)
    return buffer.getvalue()


def decode_chunk(
    path: str, times, options: FrameOptions, detector: faces_lib.FaceDetector, number: int = 0
) -> ChunkResult:
    """Decodes the frames at `times`, finds their faces and cuts the aligned crops."""
    decoded, failure = [], None
    try:
        for frame in video.read_frames(path, times, max_pixels=options.max_frame_pixels):
            decoded.append(frame)
    except video.VideoError as error:
        failure = (error.reason, f"{type(error).__name__}: {error}")
    # The chunk's frames go through the detector in one call (RetinaFace batches them).
    found_per_frame = detector.detect_batch([frame.image for frame in decoded]) if decoded else []
    frames = []
    for frame, found in zip(decoded, found_per_frame):
        crops = tuple(
            FaceCrop(
                face_number=face_number,
                box=tuple(float(v) for v in face.box),
                landmarks=tuple(tuple(float(v) for v in point) for point in face.landmarks),
                confidence=float(face.confidence),
                jpeg=encode_jpeg(faces_lib.align(frame.image, face.landmarks, options.image_size)),
            )
            for face_number, face in enumerate(found.faces)
        )
        frames.append(DecodedFrame(frame.index, frame.time, crops, len(found.too_small)))
    if failure:
        return ChunkResult(number, tuple(frames), failure)
    return ChunkResult(number, tuple(frames))


class DecodeChunkFn(beam.DoFn):
    """(video id, (chunk number, path, times)) -> (video id, ChunkResult); one face detector
    per worker (loaded in `setup`)."""

    def __init__(self, options: FrameOptions):
        self._options = options
        self._detector = None

    def setup(self):
        self._detector = self._options.face_detector()

    def process(self, element):
        video_id, (number, path, times) = element
        result = decode_chunk(path, times, self._options, self._detector, number)
        Metrics.counter(METRICS_NAMESPACE, "frames_decoded").inc(len(result.frames))
        yield video_id, result


def _example(planned: PlannedVideo, frame: DecodedFrame, face: FaceCrop, track: int):
    source = planned.source
    stem = posixpath.splitext(posixpath.basename(source.id))[0]
    name = f"{stem}_f{frame.index:06d}_face{face.face_number}.jpg"
    example_id = f"{source.id}/f{frame.index:06d}_face{face.face_number}.jpg"
    return (
        source.split,
        example_id,
        {
            schema.IMAGE: face.jpeg,
            schema.LABEL: source.label,
            schema.ID: example_id,
            schema.FILENAME: name,
            schema.SHA256: images.sha256_hex(face.jpeg),
            schema.VIDEO_ID: source.id,
            schema.FRAME_INDEX: int(frame.index),
            schema.TRACK_ID: int(track),
            schema.SOURCE: source.source,
        },
    )


class AssembleVideoFn(beam.DoFn):
    """(video id, {"video": [PlannedVideo], "chunks": [ChunkResult]}) -> examples + a ledger record.

    Main output: (split, example id, example dict) per face crop. Tagged "ledger":
    the video's one record.
    """

    def process(self, element):
        _, joined = element
        (planned,) = joined["video"]
        results = sorted(joined["chunks"], key=lambda r: r.chunk)
        common = {
            "sha256": planned.sha256,
            "source_sha256": planned.sha256,
            "duplicate": planned.duplicate,
            "duplicate_of": planned.duplicate_of,
        }
        broken = next((r.error for r in results if r.error), None)
        ordered = _frames_in_order(results)
        if broken:
            yield beam.pvalue.TaggedOutput(
                "ledger", _reject_broken(planned, broken, ordered, common)
            )
            return
        faces = sum(len(frame.faces) for frame in ordered)
        if not faces:
            yield beam.pvalue.TaggedOutput("ledger", _reject_faceless(planned, ordered, common))
            return
        yield from _write_video(planned, ordered, faces, common)


def _frames_in_order(results: list[ChunkResult]) -> list[DecodedFrame]:
    """The chunks' frames by frame index, each index once (the first chunk's)."""
    frames: dict[int, DecodedFrame] = {}
    for result in results:
        for frame in result.frames:
            frames.setdefault(frame.index, frame)
    return [frames[index] for index in sorted(frames)]


def _reject_broken(
    planned: PlannedVideo, broken: tuple[str, str], ordered: list[DecodedFrame], common: dict
) -> dict:
    """The ledger record of a video a chunk could not decode (rejected whole: module docstring)."""
    reason, message = broken
    _count(f"rejected_{reason}")
    return _ledger(
        planned.source,
        ledger.REJECTED,
        reason=reason,
        detail=f"{message}; {len(ordered)} of {len(planned.times)} sampled frames "
        "decoded before it",
        frames=len(ordered),
        **common,
    )


def _reject_faceless(planned: PlannedVideo, ordered: list[DecodedFrame], common: dict) -> dict:
    """The ledger record of a video with no usable face: `face_too_small` or `no_face`."""
    too_small = sum(frame.too_small for frame in ordered)
    reason = FACE_TOO_SMALL if too_small else NO_FACE
    detail = (
        f"{too_small} face(s) in {len(ordered)} sampled frames, all smaller than --min_face_size"
        if too_small
        else f"no face in {len(ordered)} sampled frames"
    )
    _count(f"rejected_{reason}")
    return _ledger(
        planned.source,
        ledger.REJECTED,
        reason=reason,
        detail=detail,
        frames=len(ordered),
        **common,
    )


def _write_video(planned: PlannedVideo, ordered: list[DecodedFrame], faces: int, common: dict):
    """One example per face crop, each with its track over the whole video, then the record."""
    source = planned.source
    track_ids = faces_lib.track_faces(
        [
            [
                faces_lib.Face(box=face.box, landmarks=face.landmarks, confidence=face.confidence)
                for face in frame.faces
            ]
            for frame in ordered
        ]
    )
    for frame, ids in zip(ordered, track_ids):
        for face, track in zip(frame.faces, ids):
            yield _example(planned, frame, face, track)
    _count(f"written_{source.split}")
    Metrics.counter(METRICS_NAMESPACE, f"faces_{source.split}").inc(faces)
    yield beam.pvalue.TaggedOutput(
        "ledger",
        _ledger(
            source,
            ledger.WRITTEN,
            frames=len(ordered),
            faces=faces,
            tracks=len({t for ids in track_ids for t in ids}),
            **common,
        ),
    )


class BuildVideoExamples(beam.PTransform):
    """Listed videos -> {"examples": (split, id, example), "ledger": one dict per video}.

    Applied to a PCollection of `video_sources.VideoSource` (from
    `ledger.ReadSourceList(path, parse=video_sources.from_json)`, or `beam.Create` in
    tests); see the module docstring for the steps.
    """

    def __init__(self, options: FrameOptions | None = None):
        super().__init__()
        self._options = options or FrameOptions()
        self._options.validate()

    def expand(self, listed):
        options = self._options
        readable, unreadable = listed | "SplitListingProblems" >> beam.Partition(
            lambda source, _: 1 if source.problem else 0, 2
        )
        planned, unplayable = readable | "PlanVideos" >> beam.Map(
            plan_video, options
        ).with_exception_handling(exc_class=video.VideoError)
        resolved = (
            planned
            | "KeyBySha256" >> beam.Map(lambda p: (p.sha256, p))
            | "GroupBySha256" >> beam.GroupByKey()
            | "ResolveDuplicates"
            >> beam.ParDo(ResolveDuplicatesFn()).with_outputs("ledger", main="videos")
        )
        chunks = (
            resolved.videos
            | "CutChunks" >> beam.FlatMap(_cut_chunks, options.chunk_frames)
            # Chunks of one video go to any worker: a long video does not hold one.
            | "SpreadChunks" >> beam.Reshuffle()
            | "DecodeChunks" >> beam.ParDo(DecodeChunkFn(options))
        )
        assembled = (
            {
                "video": resolved.videos | "KeyById" >> beam.Map(lambda p: (p.source.id, p)),
                "chunks": chunks,
            }
            | "JoinByVideo" >> beam.CoGroupByKey()
            | "AssembleVideos"
            >> beam.ParDo(AssembleVideoFn()).with_outputs("ledger", main="examples")
        )
        ledger = (
            assembled.ledger,
            resolved.ledger,
            unplayable | "RejectUnplayable" >> beam.Map(_reject_unplayable),
            unreadable | "RejectListed" >> beam.Map(_reject_listed),
        ) | "MergeLedger" >> beam.Flatten()
        return {"examples": assembled.examples, "ledger": ledger}
