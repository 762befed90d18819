"""The exported detector: a SavedModel that scores JPEG bytes, and its metadata.

Contract (what `trainer.evaluate`, `trainer.predict`, batch scoring and TF
Serving rely on):

- `<export_dir>/` is a SavedModel whose `serving_default` signature takes
  `images`: a 1-D tf.string batch of JPEG-encoded images (any size), and
  returns `{"p_fake": float32[batch]}`, the probability that each image is
  fake (the positive class).
- `<export_dir>/detector.json` records what a consumer needs besides the
  graph: the decision threshold and where it came from, the input size, the
  label names and the backbone.

It is written with `keras.export.ExportArchive` rather than a hand-made
`tf.Module`: the latter reloads in Python but fails in the session-based
loader used by `saved_model_cli run` and TF Serving (see docs/architecture.md#pitfalls).
"""

from __future__ import annotations

import dataclasses
import json
import os

from absl import logging
import keras
import tensorflow as tf

from preprocessing import schema

# Where trainer.task puts its artifacts under --model_dir; evaluation, prediction and
# Grad-CAM find them there.
EXPORT_SUBDIR = "export"
KERAS_MODEL_FILENAME = "model.keras"
METADATA_FILENAME = "detector.json"
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "p_fake"

# Fraction of the shorter side kept by the evaluation centre crop (224/256, the
# usual ImageNet ratio; a 256x256 Kaggle face keeps its central 224x224).
EVAL_CROP_FRACTION = 0.875


def decode_for_eval(jpeg_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decodes one JPEG, centre-crops it and resizes it to `image_size` square.

    Args:
        jpeg_bytes: scalar tf.string with JPEG bytes.
        image_size: side of the square output, in pixels.

    Returns:
        uint8 tensor [image_size, image_size, 3]; the model does its own
        normalisation, so callers never rescale.
    """
    shape = tf.image.extract_jpeg_shape(jpeg_bytes)
    height, width = shape[0], shape[1]
    side = tf.cast(tf.cast(tf.minimum(height, width), tf.float32) * EVAL_CROP_FRACTION, tf.int32)
    side = tf.maximum(side, 1)
    offset_y = (height - side) // 2
    offset_x = (width - side) // 2
    crop_window = tf.stack([offset_y, offset_x, side, side])
    image = tf.image.decode_and_crop_jpeg(jpeg_bytes, crop_window, channels=3)
    return resize_uint8(image, image_size)


def resize_uint8(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resizes an RGB image to `image_size` square with antialiasing; returns uint8."""
    resized = tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


@dataclasses.dataclass(frozen=True)
class DetectorMetadata:
    """What the export records next to its graph."""

    image_size: int
    threshold: float = 0.5
    # How `threshold` was chosen, e.g. "default", "validation EER".
    threshold_source: str = "default"
    backbone: str = "resnet50"
    label_names: tuple[str, ...] = schema.LABEL_NAMES
    positive_class: str = schema.POSITIVE_CLASS
    output: str = OUTPUT_NAME
    # The model card (dfd-serve's page shows it): the TFDS dataset it was trained on,
    # when it was exported (UTC, ISO 8601), and how well its exported weights separated
    # the validation split. Empty/None in exports written before these keys existed.
    dataset: str = ""
    exported_at: str = ""
    validation_auc: float | None = None
    validation_eer: float | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def export_detector(model: keras.Model, export_dir: str, metadata: DetectorMetadata) -> str:
    """Writes the serving SavedModel and `detector.json` to `export_dir` (local or gs://).

    Args:
        model: takes uint8 RGB [batch, size, size, 3], returns one logit per image.
        export_dir: output folder; created if missing, overwritten if present.
        metadata: recorded beside the graph; `metadata.image_size` must match the model.

    Returns:
        `export_dir`.
    """
    size = metadata.image_size
    if model.input_shape[1:3] not in ((size, size), (None, None)):
        raise ValueError(
            f"Model input shape {model.input_shape} does not match metadata.image_size={size}."
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=INPUT_NAME)])
    def serve(images):
        pixels = tf.map_fn(
            lambda jpeg: decode_for_eval(jpeg, size),
            images,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
        )
        logits = model(pixels, training=False)
        logits = tf.reshape(tf.cast(logits, tf.float32), [-1])
        return {OUTPUT_NAME: tf.sigmoid(logits)}

    archive = keras.export.ExportArchive()
    # No `archive.track(model)`: `add_endpoint` already saves every variable the
    # endpoint reads. Tracking the model as well saved each weight twice (Keras'
    # variable wrappers under `variables/`, and the same tf.Variables under
    # `_all_variables/`), which made the export twice the size of the weights.
    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve)
    if tf.io.gfile.exists(export_dir):
        tf.io.gfile.rmtree(export_dir)
    archive.write_out(export_dir, verbose=False)
    write_metadata(export_dir, metadata)
    return export_dir


def write_metadata(export_dir: str, metadata: DetectorMetadata) -> None:
    """(Re)writes `detector.json`, e.g. after `trainer.evaluate` calibrates the threshold."""
    with tf.io.gfile.GFile(os.path.join(export_dir, METADATA_FILENAME), "w") as f:
        f.write(metadata.to_json())


class InvalidExportError(ValueError):
    """An export this project cannot use; the message names the file, the key and the fix.

    A ValueError, so every command reports it in one line (`preprocessing.cli`).
    """


# Bounds of `image_size` in detector.json: the crops and the model input are this
# many pixels square, so a value from a hand-edited or hostile file must not ask for
# gigabytes (100000 did: the aligner's crops alone exhaust memory).
MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
REQUIRED_METADATA_KEYS = ("image_size", "threshold")
_FIX = "re-export the model with trainer.task, or correct detector.json by hand"


def read_metadata(export_dir: str) -> DetectorMetadata:
    """Reads and validates `detector.json` (see `validate_metadata`).

    Raises:
        FileNotFoundError: naming the folder, when it is not an export.
        InvalidExportError: naming the file, the key and the fix, when the file is
            not valid JSON or a value has the wrong type or range.
    """
    path = os.path.join(export_dir, METADATA_FILENAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir} is not an export of this project "
            "(expected <model_dir>/export written by trainer.task)."
        )
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        values = json.loads(text)
    except ValueError as error:
        raise InvalidExportError(f"{path} is not valid JSON ({error}); {_FIX}.") from None
    return validate_metadata(values, path)


def validate_metadata(values, path: str = METADATA_FILENAME) -> DetectorMetadata:
    """Checks what detector.json holds before any tool trusts it.

    Types, ranges and required keys are errors (a threshold of 2.0 would label
    every input the same; an image_size of 100000 exhausts memory); an unknown
    key is only a warning, so a newer export still loads in an older tool.

    Raises:
        InvalidExportError: one line naming `path`, the key and the fix.
    """
    if not isinstance(values, dict):
        raise InvalidExportError(f"{path}: holds {type(values).__name__}, not an object; {_FIX}.")
    for key in REQUIRED_METADATA_KEYS:
        if key not in values:
            raise InvalidExportError(f"{path}: required key {key!r} is missing; {_FIX}.")
    known = {field.name for field in dataclasses.fields(DetectorMetadata)}
    for key in sorted(set(values) - known):
        logging.warning("%s: unknown key %r ignored (written by a newer version?).", path, key)
    size = values["image_size"]
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidExportError(f"{path}: key 'image_size' is {size!r}, not an integer; {_FIX}.")
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise InvalidExportError(
            f"{path}: key 'image_size' is {size}, outside [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] "
            f"pixels; {_FIX}."
        )
    try:
        threshold = schema.check_threshold(values["threshold"], f"{path}: key 'threshold'")
    except ValueError as error:
        raise InvalidExportError(
            f"{error} Fix: dfd-evaluate --write_threshold records a calibrated one."
        ) from None
    checked = {"image_size": size, "threshold": threshold}
    for key in ("threshold_source", "backbone", "dataset", "exported_at"):
        if key in values:
            checked[key] = _text(values[key], key, path)
    for key in ("validation_auc", "validation_eer"):
        if values.get(key) is not None:
            checked[key] = _fraction(values[key], key, path)
    _check_fixed(values, "label_names", list(schema.LABEL_NAMES), path)
    _check_fixed(values, "positive_class", schema.POSITIVE_CLASS, path)
    _check_fixed(values, "output", OUTPUT_NAME, path)
    return DetectorMetadata(**checked)


def _text(value, key: str, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidExportError(f"{path}: key {key!r} is {value!r}, not a string; {_FIX}.")
    return value


def _fraction(value, key: str, path: str) -> float:
    """A model-card rate (AUC, EER): a finite number in [0, 1], or the key is refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InvalidExportError(
            f"{path}: key {key!r} is {value!r}, not a number in [0, 1] (or null); {_FIX}."
        )
    return float(value)


def _check_fixed(values: dict, key: str, expected, path: str) -> None:
    """Keys of the contract that have one right value: another means another label order."""
    if key in values and values[key] != expected:
        raise InvalidExportError(
            f"{path}: key {key!r} is {values[key]!r}, but this project's detectors use "
            f"{expected!r} (real = 0, fake = 1, output p_fake); {_FIX}."
        )


def load_export(export_dir: str):
    """Loads the SavedModel and checks its serving signature (`check_signature`).

    Returns the loaded object: keep it while its signature is used, it owns the variables.
    """
    try:
        loaded = tf.saved_model.load(export_dir)
    except (tf.errors.OpError, OSError, ValueError) as error:
        message = getattr(error, "message", None) or str(error)
        raise InvalidExportError(
            f"{export_dir}: TensorFlow cannot load this SavedModel "
            f"({' '.join(message.split())[:200]}); {_FIX}."
        ) from None
    check_signature(loaded, export_dir)
    return loaded


def check_signature(loaded, export_dir: str) -> None:
    """Refuses a SavedModel whose serving signature is not this project's contract.

    `serving_default` must take `images`, a 1-D tf.string batch, and return `p_fake`,
    float32 of shape [batch] or [batch, 1]: a foreign model with another output would
    otherwise fail with a KeyError after the work, or (an output of [batch, 3])
    hand out wrong scores silently.
    """
    fix = f"expected <model_dir>/{EXPORT_SUBDIR} written by trainer.task"
    signatures = getattr(loaded, "signatures", {})
    if SIGNATURE_NAME not in signatures:
        raise InvalidExportError(
            f"{export_dir}: no {SIGNATURE_NAME!r} signature (has {sorted(signatures)}); {fix}."
        )
    signature = signatures[SIGNATURE_NAME]
    args, kwargs = signature.structured_input_signature
    spec = kwargs.get(INPUT_NAME)
    if args or set(kwargs) != {INPUT_NAME} or spec is None:
        raise InvalidExportError(
            f"{export_dir}: {SIGNATURE_NAME} takes {sorted(kwargs)}, not one input "
            f"{INPUT_NAME!r} (JPEG bytes); {fix}."
        )
    if spec.dtype != tf.string or spec.shape.rank != 1:
        raise InvalidExportError(
            f"{export_dir}: input {INPUT_NAME!r} is {spec.dtype.name}{spec.shape}, not a 1-D "
            f"string batch of JPEG bytes; {fix}."
        )
    outputs = signature.structured_outputs
    output = outputs.get(OUTPUT_NAME) if isinstance(outputs, dict) else None
    if output is None:
        names = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise InvalidExportError(
            f"{export_dir}: {SIGNATURE_NAME} returns {names}, not {OUTPUT_NAME!r}; {fix}."
        )
    shape = output.shape.as_list() if output.shape.rank is not None else None
    if output.dtype != tf.float32 or shape is None or shape[1:] not in ([], [1]):
        raise InvalidExportError(
            f"{export_dir}: output {OUTPUT_NAME!r} is {output.dtype.name}{shape}, not float32 "
            f"[batch] or [batch, 1] (one probability per image); {fix}."
        )


def load_scorer(export_dir: str):
    """Loads the serving function: call it with a 1-D tf.string tensor of JPEG bytes.

    Needs only TensorFlow and the export, not the training code path; refuses an
    export whose signature is not the contract (`check_signature`).
    """
    return load_export(export_dir).signatures[SIGNATURE_NAME]
