"""Image ops shared by training, evaluation and the exported serving model.

The evaluation crop lives here, not in `data.py`, because the SavedModel's
serving function must see exactly the pixels that validation saw: a served
model that crops differently from the one that was measured is a different
model.
"""

from __future__ import annotations

import tensorflow as tf

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
