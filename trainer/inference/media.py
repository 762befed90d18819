"""Photos and videos in, per-face, per-track and per-media verdicts out.

The detector was trained on aligned, face-filling crops (the 140k dataset), so
a photo is not scored as a whole: its faces are found and cropped the way the
training images were (`preprocessing.media.faces`), each face is scored, and the
photo's verdict follows `trainer.aggregation` (the most suspicious face). A
video is sampled (`preprocessing.media.video`), its faces are linked into tracks by
box overlap, each track is scored from its frames and the video from its
tracks (`trainer.aggregation` again). A photo or video without a usable face has
no verdict: status `no_face` (or `face_too_small`), never a whole-frame score.

The work is cut in stages that `trainer.predict` runs in one process and
`trainer.batch_score` runs as Beam steps (a video's frames fan out in chunks):

1. `inspect_image` / `plan_video` + `inspect_video_chunk`: read, detect, align;
   each gives a *part* record (what was found) and the face crops to score,
   keyed by (frame index, face number).
2. The crops are scored as JPEG bytes by the export (`trainer.inference.scoring`).
3. `assemble` joins the parts and the scores into one `Prediction` per input.

`--faces` (`FACE_MODES`):
- `none`: every image is scored as given, as an aligned crop (for inputs that
  are all aligned faces, like the training data: no face detection at all).
- `detect`: every image is a photo: faces are found and cropped.
- `auto` (default): a square image of at most `MAX_AUTO_CROP_SIDE` pixels is
  taken as an already-aligned crop when the face detector finds no face in it
  at all, or exactly one usable face whose canonical crop square covers most of
  the image (IoU >= `CROP_IOU`); any other image is a photo, so several faces,
  a face too small to score, or a large image make a photo. So the 140k images
  and the synthetic demo faces (which the detectors see as one face filling
  the image, or not at all) are scored whole, as crops, and a group photo is
  not. Its limit: a small square photo whose only face the detector misses
  entirely is still taken for a crop; pass `--faces=detect` when no input is an
  aligned crop.
Videos are recognised by extension or by their container's first bytes, in
every mode.

Crop size: `crop_size(image_size) = round(image_size / 0.875)`. `faces.align`
frames the face like a whole training image; the export then takes its usual
87.5% centre crop (`trainer.export.decode_for_eval`) and resizes to
`image_size`, so the model sees a face exactly as it saw a validation image.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import io
import os

from absl import flags
import numpy as np
from PIL import Image, ImageOps

from preprocessing import cli
from preprocessing.media import faces as faces_lib
from preprocessing.media import images, video
from trainer import aggregation, export, metrics
from trainer.inference import scoring

FACE_MODES = ("auto", "detect", "none")
# In `auto`, a square image whose single face's crop square overlaps the image by at
# least this much is an already-aligned crop.
CROP_IOU = 0.5
# In `auto`, a square image larger than this is a photo: aligned face crops are small
# (the 140k images are 256 px, FFHQ's largest 1024 px); a 1080x1080 photo whose faces
# MTCNN misses (turned 75 degrees, say) must not get a whole-frame verdict.
MAX_AUTO_CROP_SIDE = 1024
# Width/height within 2% counts as square.
SQUARE_TOLERANCE = 0.02
# Face crops are stored and scored as JPEG at the quality the dataset build re-encodes at.
CROP_JPEG_QUALITY = images.NORMALISED_JPEG_QUALITY

# A part key: (frame index, face number); photos and crops use frame 0.
PartKey = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class MediaOptions:
    """How photos and videos are searched for faces and sampled."""

    faces: str = "auto"
    detector: str = faces_lib.DEFAULT_FACE_DETECTOR
    min_face_size: int = faces_lib.DEFAULT_MIN_FACE_SIZE
    min_confidence: float = faces_lib.DEFAULT_MIN_CONFIDENCE
    max_faces: int = faces_lib.DEFAULT_MAX_FACES
    frames_per_second: float | None = None
    max_frames: int | None = None
    max_frame_pixels: int = video.DEFAULT_MAX_PIXELS
    # Image files with more bytes are rejected from their size, unread (file_too_large).
    max_file_bytes: int = images.DEFAULT_MAX_FILE_BYTES
    # Sampled frames per Beam work item: a long video spreads over workers.
    chunk_frames: int = 8

    def __post_init__(self):
        if self.faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}; got {self.faces!r}.")
        if self.max_file_bytes < 1:
            raise ValueError(f"--max_file_bytes must be >= 1; got {self.max_file_bytes}.")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1; got {self.chunk_frames}.")
        self.face_detector()  # Validates the detector's options now.
        if self.max_frames is not None and not 1 <= self.max_frames <= video.HARD_CAP:
            raise ValueError(
                f"max_frames must be in [1, {video.HARD_CAP}] (the hard cap); "
                f"got {self.max_frames}."
            )
        video.check_frames_per_second(self.frames_per_second)

    @classmethod
    def from_flags(cls, flag_values, **more) -> MediaOptions:
        """The flags `define_media_flags` defines, as MediaOptions.

        `more`: options only one tool has, e.g. batch scoring's chunk size.
        """
        return cls(
            faces=flag_values.faces,
            detector=flag_values.face_detector,
            min_face_size=flag_values.min_face_size,
            min_confidence=flag_values.min_face_confidence,
            max_faces=flag_values.max_faces,
            frames_per_second=flag_values.frames_per_second,
            max_frames=flag_values.max_frames,
            max_frame_pixels=flag_values.max_frame_pixels,
            max_file_bytes=flag_values.max_file_bytes,
            **more,
        )

    def face_detector(self) -> faces_lib.FaceDetector:
        return faces_lib.FaceDetector(
            min_face_size=self.min_face_size,
            min_confidence=self.min_confidence,
            max_faces=self.max_faces,
            detector=self.detector,
        )


def define_media_flags() -> None:
    """Defines the face and video flags that `MediaOptions.from_flags` reads.

    One definition for every command that scores photos and videos
    (`dfd-predict`, `dfd-batch-score`), called from the command's own
    `define_flags`, which then adopts them (`flags.adopt_module_key_flags(media)`)
    so that its `--help` lists them.
    """
    flags.DEFINE_enum(
        "faces",
        "auto",
        list(FACE_MODES),
        "auto: square images with no face or one face filling them are crops, other images "
        "are photos; detect: every image is a photo (faces found and cropped); none: every "
        "image is scored as given.",
    )
    flags.DEFINE_enum(
        "face_detector",
        faces_lib.DEFAULT_FACE_DETECTOR,
        list(faces_lib.FACE_DETECTORS),
        "Which face detector finds faces in photos and video frames: retinaface "
        "(RetinaFace-MobileNet0.25 on onnxruntime, about 10x faster) or mtcnn. Both feed the "
        "same 5-landmark alignment; each record names the one used.",
    )
    flags.DEFINE_integer(
        "min_face_size",
        faces_lib.DEFAULT_MIN_FACE_SIZE,
        "Faces smaller than this (box's shorter side, pixels) are reported, not scored.",
    )
    flags.DEFINE_float(
        "min_face_confidence",
        faces_lib.DEFAULT_MIN_CONFIDENCE,
        "The face detector's score below which a candidate is not a face.",
    )
    flags.DEFINE_integer(
        "max_faces", faces_lib.DEFAULT_MAX_FACES, "At most this many faces (the largest) per image."
    )
    flags.DEFINE_float(
        "frames_per_second", None, "Sample videos at this rate (default: --max_frames spread)."
    )
    cli.require_positive_finite("frames_per_second")
    flags.DEFINE_integer(
        "max_frames",
        None,
        f"Frames sampled per video (default {video.DEFAULT_MAX_FRAMES}, spread over the "
        f"video; at most {video.HARD_CAP}, the hard cap).",
    )
    flags.DEFINE_integer(
        "max_frame_pixels",
        video.DEFAULT_MAX_PIXELS,
        "Photos and video frames with more pixels are rejected (huge_frame).",
    )
    flags.DEFINE_integer(
        "max_file_bytes",
        images.DEFAULT_MAX_FILE_BYTES,
        "Image files larger than this are rejected unread (file_too_large); videos are "
        "streamed, never read whole, and have no byte limit.",
    )


def crop_size(image_size: int) -> int:
    """Side of the face crops for a model of `image_size`: see the module docstring."""
    return int(round(image_size / export.EVAL_CROP_FRACTION))


def is_video(path: str, head: bytes) -> bool:
    return path.lower().endswith(video.VIDEO_EXTENSIONS) or video.looks_like_video(head)


def encode_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=CROP_JPEG_QUALITY)
    return buffer.getvalue()


def decode_image(data: bytes, max_pixels: int) -> tuple[bytes, np.ndarray]:
    """(normalised JPEG bytes, uint8 RGB pixels, upright); UnreadableImageError says why not."""
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Exception:  # noqa: BLE001  Not even a header: normalise names the reason below.
        width = height = 0
    if width * height > max_pixels:
        raise scoring.UnreadableImageError(
            f"huge frame: {width}x{height} = {width * height / 1e6:.0f} MP, above the "
            f"{max_pixels / 1e6:.0f} MP limit (--max_frame_pixels)",
            video.HugeFrameError.reason,
        )
    jpeg = scoring.to_jpeg_bytes(data)
    with Image.open(io.BytesIO(jpeg)) as image:
        return jpeg, np.asarray(image.convert("RGB"))


def preview_pixels(data: bytes, max_side: int) -> np.ndarray:
    """An upright RGB copy of an image whose longest side is at most `max_side`, for drawing.

    JPEGs are decoded at a reduced scale (Pillow's `draft`), so the full-size pixels
    of a huge photo are never held alongside the drawing.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (max_side, max_side))
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((max_side, max_side))
        return np.asarray(upright.convert("RGB"))


def _bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    return (
        float(points[:, 0].min()),
        float(points[:, 1].min()),
        float(points[:, 0].max()),
        float(points[:, 1].max()),
    )


def looks_like_a_crop(pixels: np.ndarray, detections: faces_lib.Detections) -> bool:
    """The `auto` rule for a square image (see the module docstring).

    A crop is one face filling a small square image. So an image larger than
    `MAX_AUTO_CROP_SIDE`, or one with several faces or any face too small to score
    (a group photo, a crowd), is a photo, whatever else is found in it.
    """
    height, width = pixels.shape[:2]
    if max(height, width) > MAX_AUTO_CROP_SIDE:
        return False
    if detections.too_small or detections.over_limit or len(detections.faces) > 1:
        return False
    if not detections.faces:
        return True
    square = _bounding_box(faces_lib.ffhq_square(detections.faces[0].landmarks))
    return faces_lib.iou(square, (0.0, 0.0, float(width), float(height))) >= CROP_IOU


def _animation_note(data: bytes) -> dict:
    """{"frames_judged": "1 of N"} for an animated GIF/WebP/PNG, else {}.

    Only the first frame of an animated image is judged (as the dataset build
    stores it); the record says so, so that a face appearing later is not a
    silent miss. Convert the animation to a video to have every frame judged.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            frames = int(getattr(image, "n_frames", 1))
    except Exception:  # noqa: BLE001  decode_image has already read it; be safe.
        return {}
    return {"frames_judged": f"1 of {frames}"} if frames > 1 else {}


def _is_square(pixels: np.ndarray) -> bool:
    height, width = pixels.shape[:2]
    return abs(width - height) <= SQUARE_TOLERANCE * max(width, height)


def error_part(kind: str, error: Exception) -> dict:
    return {"kind": kind, "status": getattr(error, "reason", "unreadable"), "error": str(error)}


def inspect_image(
    data: bytes,
    options: MediaOptions,
    detector: faces_lib.FaceDetector | None,
    size: int,
) -> tuple[dict, list[tuple[PartKey, bytes]]]:
    """One image's part record and the crops to score (stage 1 of the module docstring).

    Args:
        detector: needed unless options.faces == "none".
        size: crop side, `crop_size(image_size)`.
    """
    try:
        jpeg, pixels = decode_image(data, options.max_frame_pixels)
    except scoring.UnreadableImageError as error:
        return {"kind": "", "status": error.reason, "error": str(error)}, []
    height, width = pixels.shape[:2]
    note = _animation_note(data)
    if options.faces == "none":
        return {"kind": "crop", **note}, [((0, 0), jpeg)]
    detections = detector.detect(pixels)
    if options.faces == "auto" and _is_square(pixels) and looks_like_a_crop(pixels, detections):
        return {"kind": "crop", "face_detector": detector.name, **note}, [((0, 0), jpeg)]
    part = {
        **note,
        "kind": "photo",
        "face_detector": detector.name,
        "width": width,
        "height": height,
        "faces": [face.to_dict() for face in detections.faces],
        "too_small": [face.to_dict() for face in detections.too_small],
        "faces_over_limit": detections.over_limit,
    }
    crops = [
        ((0, number), encode_jpeg(faces_lib.align(pixels, face.landmarks, size)))
        for number, face in enumerate(detections.faces)
    ]
    return part, crops


def plan_video(
    source: str, options: MediaOptions, max_seconds: float | None = None
) -> tuple[dict, list[list[float]]]:
    """Probes a video and cuts its sampling plan into chunks of `options.chunk_frames`.

    `max_seconds` (dfd-serve's --max_video_seconds): a longer video is sampled over its
    first `max_seconds` only, and the plan says so under "capped".
    """
    try:
        info = video.probe(source, max_pixels=options.max_frame_pixels)
    except video.VideoError as error:
        return error_part("video", error), []
    plan = {"kind": "video", "video": info.to_dict(), "face_detector": options.detector}
    sampled = info
    if max_seconds is not None and info.duration > max_seconds:
        sampled = dataclasses.replace(info, duration=max_seconds)
        plan["capped"] = {
            "max_video_seconds": max_seconds,
            "duration": info.duration,
            "note": f"only the first {max_seconds:g} s of this {info.duration:.1f} s video "
            "were sampled and scored (--max_video_seconds)",
        }
    times = video.plan_times(sampled, options.frames_per_second, options.max_frames)
    chunks = [
        times[start : start + options.chunk_frames]
        for start in range(0, len(times), options.chunk_frames)
    ]
    return {**plan, "frames_planned": len(times)}, chunks


def inspect_video_chunk(
    source: str,
    times: Sequence[float],
    options: MediaOptions,
    detector: faces_lib.FaceDetector,
    size: int,
) -> tuple[dict, list[tuple[PartKey, bytes]]]:
    """Decodes the frames at `times`, finds and crops their faces.

    Returns:
        ({"kind": "video", "frames": [{"frame_index", "time", "faces", "too_small"}],
          and "status"/"error" when the file broke}, crops keyed (frame_index, face number)).
    """
    frames: list[dict] = []
    crops: list[tuple[PartKey, bytes]] = []
    part: dict = {"kind": "video", "frames": frames}
    decoded = []
    try:
        # Decoded first, then detected in one batch (RetinaFace runs them as one call).
        for frame in video.read_frames(source, times, max_pixels=options.max_frame_pixels):
            decoded.append(frame)
    except video.VideoError as error:
        part.update(status=error.reason, error=str(error))
    found = detector.detect_batch([frame.image for frame in decoded]) if decoded else []
    for frame, detections in zip(decoded, found):
        frames.append(
            {
                "frame_index": frame.index,
                "time": round(frame.time, 4),
                "faces": [face.to_dict() for face in detections.faces],
                "too_small": len(detections.too_small),
            }
        )
        for number, face in enumerate(detections.faces):
            aligned = faces_lib.align(frame.image, face.landmarks, size)
            crops.append(((frame.index, number), encode_jpeg(aligned)))
    return part, crops


def _face_from_dict(record: Mapping) -> faces_lib.Face:
    return faces_lib.Face(
        box=tuple(record["box"]),
        landmarks=tuple(tuple(record["landmarks"][name]) for name in faces_lib.LANDMARK_NAMES),
        confidence=record["confidence"],
    )


def assemble(
    path: str,
    parts: Iterable[dict],
    scores: Mapping[PartKey, float | None],
    threshold: float,
) -> scoring.Prediction:
    """Joins an input's part records and its crops' scores into its Prediction."""
    parts = list(parts)
    kind = next((part["kind"] for part in parts if part.get("kind")), "")
    failed = [part for part in parts if part.get("error")]
    if kind == "video":
        return _assemble_video(path, parts, scores, threshold)
    if failed:
        return scoring.Prediction.reject(path, failed[0]["error"], failed[0]["status"], kind)
    if kind == "crop":
        p_fake = scores.get((0, 0))
        if p_fake is None:
            return scoring.Prediction.reject(path, scoring.UNDECODABLE, "undecodable", "crop")
        noted = ("face_detector", "frames_judged")
        details = {key: parts[0][key] for key in noted if key in parts[0]}
        return scoring.Prediction(
            path, p_fake=p_fake, label=metrics.label_name(p_fake, threshold), details=details
        )
    part = parts[0]
    scored, face_records = [], []
    for number, face in enumerate(part["faces"]):
        p_fake = scores.get((0, number))
        entry = {"face": number, **face}
        if p_fake is None:
            entry["error"] = scoring.UNDECODABLE
        else:
            entry.update(p_fake=p_fake, label=metrics.label_name(p_fake, threshold))
            scored.append(p_fake)
        face_records.append(entry)
    details = {
        "face_detector": part["face_detector"],
        "width": part["width"],
        "height": part["height"],
        "faces": face_records,
        "too_small": part["too_small"],
    }
    if part["faces_over_limit"]:
        details["faces_over_limit"] = part["faces_over_limit"]
    if "frames_judged" in part:
        details["frames_judged"] = part["frames_judged"]
    verdict = aggregation.media_score(scored)
    if verdict is None:
        status = "face_too_small" if part["too_small"] else "no_face"
        return scoring.Prediction(path, kind="photo", status=status, details=details)
    return scoring.Prediction(
        path,
        p_fake=verdict,
        label=metrics.label_name(verdict, threshold),
        kind="photo",
        details=details,
    )


def _assemble_video(
    path: str, parts: list[dict], scores: Mapping[PartKey, float | None], threshold: float
) -> scoring.Prediction:
    """A video's Prediction: its plan, its chunks' frames and their faces' scores joined.

    Faces are linked into tracks across the sampled frames, each track scored
    from its frames and the video from its tracks. A chunk that broke while
    decoding leaves a verdict on the frames decoded before it, with the error.
    """
    plan = next((part for part in parts if "video" in part or "frames_planned" in part), None)
    if plan is None or plan.get("error"):
        source = plan or next(part for part in parts if part.get("error"))
        return scoring.Prediction.reject(path, source["error"], source["status"], "video")
    frames: dict[int, dict] = {}
    for part in parts:
        for frame in part.get("frames", ()):
            frames.setdefault(frame["frame_index"], frame)
    ordered = [frames[index] for index in sorted(frames)]
    tracks, undecodable = _tracks(ordered, scores)
    track_records = [
        _track_record(number, tracks[track_id], threshold)
        for number, track_id in enumerate(sorted(tracks))
    ]
    too_small = sum(frame["too_small"] for frame in ordered)
    details = {
        "face_detector": plan.get("face_detector"),
        "video": plan["video"],
        "frames_planned": plan["frames_planned"],
        "frames_sampled": len(ordered),
        "frames_with_faces": sum(bool(frame["faces"]) for frame in ordered),
        "faces_too_small": too_small,
        "tracks": track_records,
    }
    if undecodable:
        details["faces_undecodable"] = undecodable
    verdict = aggregation.media_score(track["p_fake"] for track in track_records)
    broken = next((part for part in parts if part.get("error")), None)
    error = broken["error"] if broken else None
    if broken:
        status = broken["status"]
        if not ordered:
            return scoring.Prediction.reject(path, error, status, "video")
        error += f"; the verdict covers the {len(ordered)} frame(s) decoded before it"
    elif verdict is None:
        status = "face_too_small" if too_small else "no_face"
    else:
        status = "ok"
    return scoring.Prediction(
        path,
        p_fake=verdict,
        label=None if verdict is None else metrics.label_name(verdict, threshold),
        error=error,
        kind="video",
        status=status,
        details=details,
    )


def _tracks(
    frames: list[dict], scores: Mapping[PartKey, float | None]
) -> tuple[dict[int, list[dict]], int]:
    """({track id: its scored faces, in frame order}, faces the model could not decode)."""
    track_ids = faces_lib.track_faces(
        [[_face_from_dict(face) for face in frame["faces"]] for frame in frames]
    )
    tracks: dict[int, list[dict]] = {}
    undecodable = 0
    for frame, ids in zip(frames, track_ids):
        for number, (face, track) in enumerate(zip(frame["faces"], ids)):
            p_fake = scores.get((frame["frame_index"], number))
            if p_fake is None:
                undecodable += 1
                continue
            tracks.setdefault(track, []).append(
                {
                    "frame_index": frame["frame_index"],
                    "time": frame["time"],
                    "box": face["box"],
                    "confidence": face["confidence"],
                    "p_fake": p_fake,
                }
            )
    return tracks, undecodable


def _track_record(number: int, track: list[dict], threshold: float) -> dict:
    """One track's record: its score (`aggregation.track_score`), label, span and frames."""
    p_fake = aggregation.track_score(entry["p_fake"] for entry in track)
    return {
        "track_id": number,
        "p_fake": p_fake,
        "label": metrics.label_name(p_fake, threshold),
        "start_time": track[0]["time"],
        "end_time": track[-1]["time"],
        "num_frames": len(track),
        "frames": track,
    }


# ---------------------------------------------------------------------------- one machine


def stage_file(
    path: str,
    options: MediaOptions,
    detector: faces_lib.FaceDetector | None,
    size: int,
) -> tuple[list[dict], list[tuple[PartKey, bytes]]]:
    """Stage 1 for one file, in this process: its parts and its crops."""
    try:
        if is_video(path, scoring.read_head(path)):
            return _stage_video(path, options, detector, size)
        data = scoring.read_bytes(path, options.max_file_bytes)
    except scoring.UnreadableImageError as error:
        return [{"kind": "", "status": error.reason, "error": str(error)}], []
    part, crops = inspect_image(data, options, detector, size)
    return [part], crops


def _stage_video(
    path: str, options: MediaOptions, detector: faces_lib.FaceDetector | None, size: int
) -> tuple[list[dict], list[tuple[PartKey, bytes]]]:
    plan, chunks = plan_video(path, options)
    parts, crops = [plan], []
    for times in chunks:
        part, chunk_crops = inspect_video_chunk(
            path, times, options, detector or options.face_detector(), size
        )
        parts.append(part)
        crops.extend(chunk_crops)
    return parts, crops


def score_files(
    detector: scoring.Detector,
    files: Sequence[str],
    options: MediaOptions,
    batch_size: int = 32,
    face_detector: faces_lib.FaceDetector | None = None,
) -> Iterable[scoring.Prediction]:
    """Yields one Prediction per file, in order; the crops of `batch_size` files per model call
    group (a video's crops are scored together)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if face_detector is None and options.faces != "none":
        face_detector = options.face_detector()
    size = crop_size(detector.metadata.image_size)
    for start in range(0, len(files), batch_size):
        group = files[start : start + batch_size]
        staged = [stage_file(path, options, face_detector, size) for path in group]
        flat = [
            (index, key, jpeg) for index, (_, crops) in enumerate(staged) for key, jpeg in crops
        ]
        scores: list[float | None] = []
        for offset in range(0, len(flat), batch_size):
            scores.extend(
                detector.score_safely([jpeg for _, _, jpeg in flat[offset : offset + batch_size]])
            )
        per_file: list[dict[PartKey, float | None]] = [{} for _ in group]
        for (index, key, _), p_fake in zip(flat, scores):
            per_file[index][key] = p_fake
        for path, (parts, _), file_scores in zip(group, staged, per_file):
            yield assemble(path, parts, file_scores, detector.threshold)


def output_name(path: str, suffix: str, used: set[str]) -> str:
    """`<stem><suffix>`, made unique among `used` (two inputs may share a base name)."""
    stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "input"
    name, number = f"{stem}{suffix}", 1
    while name in used:
        number += 1
        name = f"{stem}-{number}{suffix}"
    used.add(name)
    return name
