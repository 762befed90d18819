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


def read_metadata(export_dir: str) -> DetectorMetadata:
    """Reads `detector.json`; raises FileNotFoundError naming the folder if it is not an export."""
    path = os.path.join(export_dir, METADATA_FILENAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: {export_dir} is not an export of this project "
            "(expected <model_dir>/export written by trainer.task)."
        )
    with tf.io.gfile.GFile(path) as f:
        values = json.load(f)
    values["label_names"] = tuple(values["label_names"])
    return DetectorMetadata(**values)


def load_scorer(export_dir: str):
    """Loads the serving function: call it with a 1-D tf.string tensor of JPEG bytes.

    Needs only TensorFlow and the export, not the training code path.
    """
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures[SIGNATURE_NAME]
