"""Reading image inputs and scoring them with the exported detector, shared by
`trainer.predict` (one machine) and `trainer.batch_score` (Beam RunInference).

Kept apart from both command-line modules so that neither defines the other's
flags, and so the Beam workers import only what they need: TensorFlow, Pillow
and the export contract, never the training code.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf

from preprocessing import images, paths, schema
from trainer import export

GLOB_CHARACTERS = "*?["


class UnreadableImageError(ValueError):
    """An input that is not an image the detector can score; the message says why."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One input's outcome: a score and label, or the reason it was not scored."""

    path: str
    p_fake: float | None = None
    label: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


def expand_inputs(inputs: Iterable[str]) -> tuple[list[str], list[Prediction]]:
    """Turns files, folders and globs into a sorted list of files.

    Returns:
        (files, missing): `missing` holds a Prediction with an error for each
        input that matched nothing, so it is reported like any other reject.
    """
    files: list[str] = []
    missing: list[Prediction] = []
    for item in inputs:
        if any(character in item for character in GLOB_CHARACTERS):
            matches = sorted(tf.io.gfile.glob(item))
            if not matches:
                missing.append(Prediction(item, error="no file matches this glob"))
            for match in matches:
                files.extend(_files_under(match) if tf.io.gfile.isdir(match) else [match])
        elif tf.io.gfile.isdir(item):
            found = _files_under(item)
            if not found:
                missing.append(Prediction(item, error="folder holds no files"))
            files.extend(found)
        elif tf.io.gfile.exists(item):
            files.append(item)
        else:
            missing.append(Prediction(item, error="file not found"))
    return list(dict.fromkeys(files)), missing


def _files_under(folder: str) -> list[str]:
    found = []
    for root, _, names in tf.io.gfile.walk(folder):
        found.extend(paths.join(root, name) for name in names if not name.startswith("."))
    return sorted(found)


def to_jpeg_bytes(data: bytes) -> bytes:
    """Returns JPEG bytes the serving signature can decode.

    The same normalisation the dataset build applies (`preprocessing.images.normalise`),
    so a served image reaches the model as a training image did: a valid upright RGB
    JPEG keeps its bytes; PNG, WebP, grayscale, CMYK or EXIF-rotated images are
    converted once to an upright RGB JPEG.

    Raises:
        UnreadableImageError: when the bytes are not a complete image.
    """
    try:
        return images.normalise(data).jpeg
    except images.InvalidImageError as error:
        raise UnreadableImageError(
            f"not a readable image ({type(error).__name__}: {error})"
        ) from None


def read_image(path: str) -> bytes:
    """Reads a local or gs:// file and returns JPEG bytes; UnreadableImageError says why not."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except (tf.errors.OpError, OSError) as error:
        raise UnreadableImageError(f"cannot read file ({error})") from None
    if not data:
        raise UnreadableImageError("empty file")
    return to_jpeg_bytes(data)


class Detector:
    """The exported detector and its metadata, scoring batches of JPEG bytes."""

    def __init__(self, export_dir: str, threshold: float | None = None):
        self.export_dir = export_dir
        self.metadata = export.read_metadata(export_dir)
        self.threshold = self.metadata.threshold if threshold is None else float(threshold)
        self._serve = export.load_scorer(export_dir)
        logging.info(
            "Loaded %s (image_size=%d, threshold=%.4f from %s).",
            export_dir,
            self.metadata.image_size,
            self.threshold,
            self.metadata.threshold_source if threshold is None else "--threshold",
        )

    def score(self, jpegs: Sequence[bytes]) -> np.ndarray:
        """p_fake for each JPEG; raises tf.errors.InvalidArgumentError if one cannot be decoded."""
        if not jpegs:
            return np.zeros([0], np.float32)
        outputs = self._serve(**{export.INPUT_NAME: tf.constant(list(jpegs), dtype=tf.string)})
        return outputs[export.OUTPUT_NAME].numpy().reshape(-1)

    def label(self, p_fake: float) -> str:
        return schema.LABEL_NAMES[schema.FAKE if p_fake >= self.threshold else schema.REAL]

    def score_items(self, items: Sequence[tuple[str, bytes]]) -> list[Prediction]:
        """Scores (path, jpeg) pairs as one batch; a batch the model rejects is retried one by one.

        Pillow accepts a few files TensorFlow's JPEG decoder does not; retrying
        alone pins the failure on that file instead of losing the whole batch.
        """
        try:
            scores = self.score([jpeg for _, jpeg in items])
        except tf.errors.InvalidArgumentError:
            if len(items) == 1:
                return [Prediction(items[0][0], error="the model could not decode this image")]
            return [result for item in items for result in self.score_items([item])]
        return [
            Prediction(path, p_fake=float(p), label=self.label(float(p)))
            for (path, _), p in zip(items, scores)
        ]


def predict_files(
    detector: Detector, files: Sequence[str], batch_size: int = 32
) -> Iterator[Prediction]:
    """Yields one Prediction per file, in order, reading `batch_size` files at a time."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    for start in range(0, len(files), batch_size):
        batch: list[tuple[str, bytes]] = []
        outcomes: dict[str, Prediction] = {}
        for path in files[start : start + batch_size]:
            try:
                batch.append((path, read_image(path)))
            except UnreadableImageError as error:
                logging.warning("Skipping %s: %s", path, error)
                outcomes[path] = Prediction(path, error=str(error))
        for result in detector.score_items(batch):
            outcomes[result.path] = result
        for path in files[start : start + batch_size]:
            yield outcomes[path]
