"""A tiny detector exported through the real export contract, for the evaluate/predict tests.

It has the same shape as `trainer.model.build_model` (uint8 input -> preprocessing
-> nested backbone sub-model -> pooling -> float32 logit) but a few thousand
weights instead of ResNet50's millions, so exporting it takes seconds. Its
weights are fixed so that brighter images score as more likely fake: tests can
craft images whose scores they know the order of.
"""

from __future__ import annotations

import io
import os

import keras
import numpy as np
from PIL import Image

from trainer import export
from trainer import model as model_lib

IMAGE_SIZE = 32


def build_tiny_model(image_size: int = IMAGE_SIZE) -> keras.Model:
    """A chain-shaped classifier whose logit grows with the image's brightness."""
    backbone_input = keras.Input((image_size, image_size, 3))
    x = keras.layers.Conv2D(
        4, 3, padding="same", name="conv1", kernel_initializer=keras.initializers.Constant(0.01)
    )(backbone_input)
    x = keras.layers.Conv2D(
        4,
        3,
        strides=2,
        padding="same",
        name="last_conv",
        kernel_initializer=keras.initializers.Constant(0.05),
    )(x)
    backbone = keras.Model(backbone_input, x, name="tiny_backbone")
    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="images")
    x = model_lib.ImagePreprocessing("tf", name="preprocessing")(images)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(
        1, dtype="float32", name="logit", kernel_initializer=keras.initializers.Constant(0.5)
    )(x)
    return keras.Model(images, logits, name="tiny_detector")


def export_tiny_detector(model_dir: str, threshold: float = 0.5, **card) -> str:
    """Exports the tiny model to <model_dir>/export and saves <model_dir>/model.keras.

    `card`: model-card fields of `export.DetectorMetadata` (dataset, validation_auc...).
    """
    model = build_tiny_model()
    os.makedirs(model_dir, exist_ok=True)
    model.save(os.path.join(model_dir, "model.keras"))
    return export.export_detector(
        model,
        os.path.join(model_dir, "export"),
        export.DetectorMetadata(image_size=IMAGE_SIZE, threshold=threshold, **card),
    )


def jpeg_bytes(
    brightness: int, size: int = 48, seed: int = 0, image_format: str = "JPEG", mode: str = "RGB"
) -> bytes:
    """An image of roughly uniform `brightness` (0-255) with a little noise, encoded."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(brightness + rng.normal(0, 8, (size, size, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **({"quality": 95} if image_format == "JPEG" else {}))
    return buffer.getvalue()
