"""Grad-CAM overlays: which parts of a face drove the detector's decision.

Grad-CAM (Selvaraju et al., 2017) weights the feature maps of the backbone's
last convolutional block by the mean gradient of the decision with respect to
them, keeps the positive part and upsamples it onto the image. For a detector
this is the first thing a user asks after "is it fake?": "why?". It needs the
Keras model, not the SavedModel, because it reads an inner layer and its
gradients: `model.keras`, which `trainer.task` saves beside the export, loaded
with `safe_mode=True` (a model file is a program; see docs/architecture.md#pitfalls).

The explained score is the predicted class's: the logit when the image is
called fake, minus the logit when it is called real, so warm areas always mean
"evidence for what the detector said".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import io
import os

import keras
import matplotlib

matplotlib.use("Agg")  # Headless: explanations are written on servers and in CI.
from matplotlib import pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from preprocessing import cli, paths  # noqa: E402
from trainer import export, metrics  # noqa: E402
from trainer.inference import media, scoring

# Opacity of the heat map over the face.
OVERLAY_ALPHA = 0.45
# Explanations are drawn at least this many pixels wide, whatever the model's input size.
DISPLAY_SIZE = 256
COLOUR_MAP = "jet"


def default_keras_model_path(export_dir: str) -> str:
    """`<model_dir>/model.keras` for an export at `<model_dir>/export`."""
    return paths.join(os.path.dirname(export_dir.rstrip("/")), export.KERAS_MODEL_FILENAME)


# A .keras file is a zip archive: it starts with a zip local-file header.
_ZIP_MAGIC = b"PK\x03\x04"


def load_keras_model(path: str, image_size: int | None = None) -> keras.Model:
    """Loads `model.keras` with safe_mode=True; the project's custom layers are registered first.

    Args:
        path: local or gs:// `.keras` file.
        image_size: when given, the model's input must be this many pixels square
            (the export's `image_size`), or be of any size.

    Raises:
        FileNotFoundError: naming the path and where trainer.task writes it.
        ValueError: one line naming the path, when the file is not a Keras archive,
            cannot be loaded under safe mode (a Lambda layer, say), or has another
            input size; checked before any scoring, so no work is lost.
    """
    if not tf.io.gfile.exists(path) or tf.io.gfile.isdir(path):
        raise FileNotFoundError(
            f"{path} not found: --explain needs the Keras model that trainer.task saves as "
            f"<model_dir>/{export.KERAS_MODEL_FILENAME}; pass --keras_model=<path>."
        )
    with tf.io.gfile.GFile(path, "rb") as f:
        is_archive = f.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    if not is_archive:
        raise ValueError(
            f"{path} is not a Keras file (a .keras file is a zip archive); pass the "
            f"{export.KERAS_MODEL_FILENAME} trainer.task saved, with --keras_model=<path>."
        )
    from trainer import model as _model  # noqa: F401  Registers ImagePreprocessing for loading.

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001  Keras raises many types for a bad archive.
        raise ValueError(
            f"{path}: Keras cannot load this model under safe mode ({cli.one_line(error)[:300]}); "
            f"pass the {export.KERAS_MODEL_FILENAME} trainer.task saved, with --keras_model."
        ) from None
    shape = tuple(getattr(model, "input_shape", ())[1:3])
    if image_size is not None and shape not in ((image_size, image_size), (None, None)):
        raise ValueError(
            f"{path}: the Keras model takes {shape} pixels but the export's image_size is "
            f"{image_size}: it is not this export's model; pass its own with --keras_model."
        )
    return model


def _is_spatial(layer: keras.layers.Layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def find_target_layer(
    model: keras.Model, layer_name: str | None = None
) -> tuple[keras.Model | None, str]:
    """Finds the layer Grad-CAM reads: by name, or the backbone's last 4-D output.

    Returns:
        (backbone, name): `backbone` is the nested sub-model holding the layer
        (as in `trainer.model.build_model`), or None when the layer sits in
        `model` itself. For ResNet50 the default is `conv5_block3_out`, the
        output of the last convolutional block.

    Raises:
        ValueError: naming the layer when it is not in the model, or when the
            model has no 4-D feature map at all.
    """
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    for backbone in nested:
        names = [layer.name for layer in backbone.layers]
        if layer_name is None:
            spatial = [layer.name for layer in backbone.layers if _is_spatial(layer)]
            if spatial:
                return backbone, spatial[-1]
        elif layer_name in names:
            return backbone, layer_name
    top = [layer.name for layer in model.layers]
    if layer_name is not None:
        if layer_name in top:
            return None, layer_name
        raise ValueError(f"Layer {layer_name!r} is not in model {model.name!r} or its backbone.")
    spatial = [layer.name for layer in model.layers[1:] if _is_spatial(layer)]
    if not spatial:
        raise ValueError(f"Model {model.name!r} has no 4-D feature map for Grad-CAM.")
    return None, spatial[-1]


class GradCam:
    """Grad-CAM for a chain-shaped classifier (input -> ... -> backbone -> ... -> one logit)."""

    def __init__(self, model: keras.Model, layer_name: str | None = None):
        self.model = model
        self.backbone, self.layer_name = find_target_layer(model, layer_name)
        if self.backbone is not None:
            target = self.backbone.get_layer(self.layer_name).output
            self._inner = keras.Model(self.backbone.inputs, [target, self.backbone.outputs[0]])
        else:
            target = model.get_layer(self.layer_name).output
            self._inner = None
            self._split = keras.Model(model.inputs, [target, model.outputs[0]])

    def _forward(self, pixels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if self._inner is None:
            return self._split(pixels, training=False)
        features = None
        x = pixels
        for layer in self.model.layers[1:]:  # Functional layers are in topological order.
            if layer is self.backbone:
                features, x = self._inner(x, training=False)
            else:
                x = layer(x, training=False)
        return features, x

    def heatmap(self, pixels: np.ndarray) -> tuple[np.ndarray, float]:
        """Grad-CAM of one uint8 image [size, size, 3] at the model's input size.

        Returns:
            (heatmap in [0, 1] with the feature map's spatial shape, the logit).

        Raises:
            ValueError: when replaying the model layer by layer does not give its
                own output, i.e. the model is not a simple chain.
        """
        batch = tf.convert_to_tensor(pixels[None])
        with tf.GradientTape() as tape:
            features, logits = self._forward(batch)
            logit = tf.reshape(tf.cast(logits, tf.float32), [])
            # Explain the predicted class: evidence for "fake" when the logit is positive.
            target = logit if logit >= 0 else -logit
        gradients = tape.gradient(target, features)
        direct = float(tf.reshape(self.model(batch, training=False), []))
        if not np.isclose(direct, float(logit), rtol=1e-3, atol=1e-3):
            raise ValueError(
                f"Model {self.model.name!r} is not a simple chain around its backbone "
                f"(replayed logit {float(logit):.4f} != model logit {direct:.4f}); pass "
                "--explain_layer naming a top-level layer."
            )
        weights = tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(1, 2))  # [1, channels]
        cam = tf.nn.relu(
            tf.reduce_sum(tf.cast(features, tf.float32) * weights[:, None, None, :], -1)
        )[0]
        peak = float(tf.reduce_max(cam))
        cam = cam / peak if peak > 0 else cam
        return cam.numpy(), float(logit)


def overlay_png(pixels: np.ndarray, heatmap: np.ndarray, title: str) -> bytes:
    """The image and the image under its heat map, side by side, with the map's colour scale.

    The map is relative: 1 is the strongest evidence in this image (Grad-CAM is
    normalised per image), so the scale reads "share of this image's peak", not
    a probability.
    """
    side = max(DISPLAY_SIZE, pixels.shape[0])
    image = tf.image.resize(pixels, [side, side], method="bilinear").numpy() / 255.0
    heat = tf.image.resize(heatmap[..., None], [side, side], method="bilinear").numpy()[..., 0]
    colours = matplotlib.colormaps[COLOUR_MAP](np.clip(heat, 0, 1))[..., :3]
    blended = np.clip((1 - OVERLAY_ALPHA) * image + OVERLAY_ALPHA * colours, 0, 1)
    figure, axes = plt.subplots(1, 2, figsize=(7.2, 3.6), dpi=100)
    for axis, picture, name in ((axes[0], image, "input"), (axes[1], blended, "Grad-CAM")):
        axis.imshow(picture)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    scale = figure.colorbar(
        matplotlib.cm.ScalarMappable(
            norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=matplotlib.colormaps[COLOUR_MAP]
        ),
        ax=axes[1],
        fraction=0.046,
        pad=0.04,
    )
    scale.set_label("evidence, relative to this image's peak", fontsize=8)
    scale.ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def explain_jpeg(
    explainer: GradCam, jpeg: bytes, *, image_size: int, threshold: float, name: str
) -> tuple[bytes, float, str]:
    """Grad-CAM of one JPEG as the export sees it; returns (PNG bytes, p_fake, label).

    Pixels come from `export.decode_for_eval`, the crop the exported model
    sees, so the map explains the served decision.
    """
    pixels = export.decode_for_eval(tf.constant(jpeg), image_size).numpy()
    heatmap, logit = explainer.heatmap(pixels)
    p_fake = float(tf.sigmoid(logit))
    label = metrics.label_name(p_fake, threshold)
    title = (
        f"{name}: p_fake={p_fake:.3f} -> {label} "
        f"(threshold {threshold:.3f}; layer {explainer.layer_name})"
    )
    return overlay_png(pixels, heatmap, title), p_fake, label


def explain_files(
    keras_model: str | keras.Model,
    files: Sequence[str],
    output_dir: str,
    *,
    image_size: int,
    threshold: float,
    layer_name: str | None = None,
) -> Iterator[tuple[str, str]]:
    """Writes one Grad-CAM PNG per readable image file; yields (input path, PNG path).

    Pixels come from `export.decode_for_eval`, the crop the exported model
    sees, so the map explains the served decision. Unreadable files are skipped
    (predict has already reported them).
    """
    model = load_keras_model(keras_model) if isinstance(keras_model, str) else keras_model
    explainer = GradCam(model, layer_name)
    tf.io.gfile.makedirs(output_dir)
    used: set[str] = set()
    for path in files:
        try:
            jpeg = scoring.read_image(path)
        except scoring.UnreadableImageError:
            continue
        png, _, _ = explain_jpeg(
            explainer,
            jpeg,
            image_size=image_size,
            threshold=threshold,
            name=os.path.basename(path),
        )
        target = paths.join(output_dir, media.output_name(path, ".gradcam.png", used))
        with tf.io.gfile.GFile(target, "wb") as f:
            f.write(png)
        yield path, target
