"""One uploaded photo, crop or video analysed: the record `dfd-predict --output=x.jsonl` writes.

The same stages as `dfd-predict` (`trainer.inference.media`): `inspect_image`,
or `plan`/`inspect_video_chunk` for a video, then the crops scored, then
`media.assemble`. Only two things differ, both limits of a shared service:

- a video longer than `max_video_seconds` is sampled on its first
  `max_video_seconds` only; the record then says so (`"capped"`);
- the work stops between video chunks when the request was abandoned (its
  time limit passed), instead of decoding frames nobody will read.

The crops are scored by the `score` callable the app gives (the dynamic
batcher, so an analysis shares model calls with predict requests). The
record's `path` is the client's file name as a label; the file itself lives
only in the request's private folder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import threading

from preprocessing.media import faces as faces_lib
from trainer.inference import drawing, media, predict_lib, scoring

ANNOTATED = "annotated.png"
TIMELINE = "timeline.png"


class Abandoned(Exception):
    """The request this analysis served is gone (timed out): stop working on it."""


class _LockedDetector:
    """The face detector shared by the analysis threads, one detection at a time
    (MTCNN's Keras models and the ONet landmark step are not documented as
    thread-safe; the other stages still overlap). Same interface as
    `faces.FaceDetector`: `name`, `detect`, `detect_batch` (videos)."""

    def __init__(self, detector: faces_lib.FaceDetector):
        self._detector = detector
        self._lock = threading.Lock()
        self.name = detector.name

    def detect(self, image):
        with self._lock:
            return self._detector.detect(image)

    def detect_batch(self, images):
        with self._lock:
            return self._detector.detect_batch(images)


@dataclasses.dataclass
class Outcome:
    """An analysis: its record and the files written beside the upload ({name: path})."""

    record: dict
    files: dict[str, str]


class Analyzer:
    """Analyses uploads with the export's threshold and image size and the face options."""

    def __init__(
        self,
        *,
        threshold: float,
        image_size: int,
        options: media.MediaOptions,
        score: Callable[[Sequence[bytes]], list[float | None]],
        max_video_seconds: float,
        keras_model: str | None = None,
        explain_layer: str | None = None,
    ):
        self.threshold = threshold
        self.image_size = image_size
        self.options = options
        self._score = score
        self.max_video_seconds = max_video_seconds
        self.keras_model = keras_model
        self.explain_layer = explain_layer
        self._faces = _LockedDetector(options.face_detector()) if options.faces != "none" else None

    def analyze(
        self,
        path: str,
        kind: str,
        name: str,
        out_dir: str,
        *,
        explain: bool = False,
        abandoned: threading.Event | None = None,
    ) -> Outcome:
        """Analyses the file at `path` ("image" or "video"); pictures go to `out_dir`."""
        abandoned = abandoned or threading.Event()
        if abandoned.is_set():  # Timed out while waiting for a thread.
            raise Abandoned()
        size = media.crop_size(self.image_size)
        capped = None
        if kind == "video":
            parts, crops, capped = self._stage_video(path, size, abandoned)
        else:
            part, crops = media.inspect_image(
                scoring.read_bytes(path), self.options, self._faces, size
            )
            parts = [part]
        if abandoned.is_set():
            raise Abandoned()
        scores = self._score([jpeg for _, jpeg in crops])
        prediction = media.assemble(
            path, parts, {key: p for (key, _), p in zip(crops, scores)}, self.threshold
        )
        files = self._pictures(prediction, path, out_dir)
        if explain and self.keras_model and prediction.p_fake is not None:
            files.update(self._explain(prediction, out_dir))
        record = {**prediction.to_dict(), "path": name}
        if capped:
            record["capped"] = capped
        return Outcome(record, files)

    def _stage_video(self, path: str, size: int, abandoned: threading.Event):
        """`media.plan_video` with the duration cap, then its chunks (stopping if abandoned)."""
        plan, chunks = media.plan_video(path, self.options, max_seconds=self.max_video_seconds)
        capped = plan.pop("capped", None)
        parts, crops = [plan], []
        for times in chunks:
            if abandoned.is_set():
                raise Abandoned()
            part, chunk_crops = media.inspect_video_chunk(
                path, times, self.options, self._faces, size
            )
            parts.append(part)
            crops.extend(chunk_crops)
        return parts, crops, capped

    def _pictures(self, prediction: scoring.Prediction, path: str, out_dir: str) -> dict:
        """The annotated photo or the video's timeline, as PNG files in `out_dir`."""
        record = prediction.to_dict()
        if prediction.kind == "photo" and prediction.status in predict_lib.JUDGED:
            png = predict_lib.annotated_photo(record, scoring.read_bytes(path), self.threshold)
            return {ANNOTATED: _write(out_dir, ANNOTATED, png)}
        if prediction.kind == "video" and record.get("tracks") is not None:
            png = drawing.timeline(record, self.threshold)
            return {TIMELINE: _write(out_dir, TIMELINE, png)}
        return {}

    def _explain(self, prediction: scoring.Prediction, out_dir: str) -> dict:
        """Grad-CAM per scored crop / face, through dfd-predict's own `explain_results`."""
        written = predict_lib.explain_results(
            [prediction],
            keras_model=self.keras_model,
            explain_dir=out_dir,
            image_size=self.image_size,
            threshold=self.threshold,
            layer_name=self.explain_layer,
            options=self.options,
        )
        return {png.rsplit("/", 1)[-1]: png for _, png in written}


def _write(folder: str, name: str, data: bytes) -> str:
    path = f"{folder}/{name}"
    with open(path, "xb") as f:
        f.write(data)
    return path
