"""Training-time augmentation of whole batches inside the training step, on the accelerator.

Why here and not in the `tf.data` map: per-image augmentation on the host
cost more CPU than decoding (measured in BENCHMARKS.md: with the 140k
recipe's flip, colour jitter, blur and JPEG re-compression the host pipeline
ran at about 0.4x its flip-only rate per core), and one GPU eats about 5,000
images/s. Pixel-wise work on a whole batch is cheap on a GPU/TPU (and fused by
XLA), so:

- the host keeps only what needs the JPEG codec: the fused decode-and-crop and
  the JPEG re-compression (`trainer.training.input_pipeline`);
- flip, colour jitter and blur run here, on the uint8 batch, at the start of
  `train_step`, under the same `tf.function` (and XLA, when on) as the model.
  On a CPU-only machine this is no saving: there, the batched ops cost more CPU
  per image than per-image ops in the `tf.data` map (BENCHMARKS.md).

The augmentation is not a layer of the model: `training_model` returns a twin
of the model (same layers, same weights) whose `train_step` augments first.
`model.input`/`model.output` are untouched, so validation, `predict`, the
checkpoints (`callbacks.inference_model`), `model.keras` and the SavedModel
export never contain it.

Randomness is stateless and keyed by (`--seed`, optimizer step, replica): the
same seed and the same input batch give the same augmented batch, every replica
draws its own parameters, and a resumed run (whose optimizer step is restored)
draws what the uninterrupted run would have. Each phase compiles a new
optimizer whose step restarts at 0, so a phase repeats the first phase's
draws, on other images.

Per image, the draws follow `reference_augment_image`, the per-image host
version that the distribution test compares with and the input-pipeline
benchmark measures: brightness delta in [-s, s), contrast and saturation
factors in [1-s, 1+s), clip to [0, 1], then with probability p a Gaussian blur
of sigma in [0.1, 1.5) (5 taps, zero padding). One difference in order: in
training, JPEG re-compression (it needs the host's codec) comes before
flip/jitter/blur; in the reference, after them.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from trainer.training import config as config_lib

BLUR_RADIUS = 2
BLUR_SIGMA_RANGE = (0.1, 1.5)
# Share of training images re-compressed (on the host: `input_pipeline.recompress_jpeg`).
JPEG_PROBABILITY = 0.5
# Separate stateless streams: [seed, 0] keys the host pipeline, [seed, 1] the step.
STEP_STREAM = 1


@dataclasses.dataclass(frozen=True)
class StepAugmentation:
    """The augmentations that run in the training step; built from the run's flags."""

    flip: bool = False
    color_jitter: float = 0.0
    blur_probability: float = 0.0

    @classmethod
    def from_config(cls, config: config_lib.TrainConfig) -> StepAugmentation:
        return cls(
            flip=config.flip,
            color_jitter=config.color_jitter,
            blur_probability=config.blur_probability,
        )

    @property
    def active(self) -> bool:
        return bool(self.flip or self.color_jitter or self.blur_probability)


# ----------------------------------------------------------------------------- batched ops


def to_float(images: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], as `tf.image.convert_image_dtype` does."""
    return tf.cast(images, tf.float32) / 255.0


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """float32 [0, 1] -> uint8, as `tf.image.convert_image_dtype(..., saturate=True)` does."""
    return tf.cast(tf.clip_by_value(images * 255.5, 0.0, 255.0), tf.uint8)


def adjust_saturation(images: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """Scales HSV saturation by a per-image factor, without the HSV round trip.

    Same result as `tf.image.adjust_saturation` (saturation clipped to 1, hue
    and value kept): with V = max(r, g, b) and S = (V - min) / V, each channel
    c becomes V - (V - c) * min(f, 1 / S); S = 0 where V <= 0.

    Args:
        images: float32 [batch, H, W, 3].
        factors: float32 [batch].
    """
    value = tf.reduce_max(images, axis=-1, keepdims=True)
    spread = value - tf.reduce_min(images, axis=-1, keepdims=True)
    f = tf.reshape(factors, [-1, 1, 1, 1])
    scale = tf.minimum(f, value / tf.maximum(spread, 1e-12))
    scale = tf.where(value > 0.0, scale, 0.0)
    return value - (value - images) * scale


def gaussian_blur_batch(images: tf.Tensor, sigmas: tf.Tensor, radius: int = BLUR_RADIUS):
    """Separable Gaussian blur, one std per image, zero padding (as `reference_gaussian_blur`).

    The batch is folded into the channels ([1, H, W, batch * C]) so that one
    depthwise convolution per direction gives every image its own kernel: two
    passes over the batch instead of one per tap.

    Args:
        images: float32 [batch, H, W, C].
        sigmas: float32 [batch], in pixels.
    """
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(
        -0.5 * tf.square(offsets[tf.newaxis, :] / tf.maximum(sigmas[:, tf.newaxis], 1e-3))
    )
    kernel /= tf.reduce_sum(kernel, axis=1, keepdims=True)  # [batch, taps]
    shape = tf.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    taps = 2 * radius + 1
    per_channel = tf.transpose(tf.repeat(kernel, channels, axis=0))  # [taps, batch * C]
    folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, height, width, batch * channels])
    folded = tf.nn.depthwise_conv2d(
        folded, tf.reshape(per_channel, [1, taps, -1, 1]), [1, 1, 1, 1], "SAME"
    )
    folded = tf.nn.depthwise_conv2d(
        folded, tf.reshape(per_channel, [taps, 1, -1, 1]), [1, 1, 1, 1], "SAME"
    )
    return tf.transpose(tf.reshape(folded, [height, width, batch, channels]), [2, 0, 1, 3])


def step_seed(seed: int, step: tf.Tensor, replica: tf.Tensor | int = 0) -> tf.Tensor:
    """The stateless seed ([2] int64) of one replica's batch at one optimizer step."""
    base = tf.constant([seed, STEP_STREAM], tf.int64)
    base = tf.random.experimental.stateless_fold_in(base, tf.cast(step, tf.int64))
    return tf.random.experimental.stateless_fold_in(base, tf.cast(replica, tf.int64))


def augment_batch(images: tf.Tensor, seed: tf.Tensor, spec: StepAugmentation) -> tf.Tensor:
    """Flip, colour jitter and blur of a uint8 batch, each image with its own draws.

    Computes in float32 whatever the Keras dtype policy; uint8 in and out, so
    the model sees the same input type as at inference.

    Args:
        images: uint8 [batch, H, W, 3].
        seed: int [2] stateless seed (`step_seed`).
        spec: what to apply.

    Returns:
        uint8 [batch, H, W, 3].
    """
    if not spec.active:
        return images
    batch = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 6)

    def uniform(index, low=0.0, high=1.0):
        return tf.random.stateless_uniform([batch], seeds[index], low, high, tf.float32)

    if spec.flip:
        flip = uniform(0) < 0.5
        images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if not (spec.color_jitter or spec.blur_probability):
        return images
    x = to_float(images)
    if spec.color_jitter:
        s = spec.color_jitter
        # Brightness (+delta) then contrast (about the per-channel mean, which
        # the delta shifts alike) in one multiply-add: (x - mean) * f + mean + delta.
        delta = tf.reshape(uniform(1, -s, s), [-1, 1, 1, 1])
        factor = tf.reshape(uniform(2, 1.0 - s, 1.0 + s), [-1, 1, 1, 1])
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        x = x * factor + (mean * (1.0 - factor) + delta)
        x = adjust_saturation(x, uniform(3, 1.0 - s, 1.0 + s))
        x = tf.clip_by_value(x, 0.0, 1.0)
    if spec.blur_probability:
        blur = uniform(4) < spec.blur_probability
        blurred = gaussian_blur_batch(x, uniform(5, *BLUR_SIGMA_RANGE))
        x = tf.where(blur[:, None, None, None], blurred, x)
    return to_uint8(x)


# ----------------------------------------------------------------------------- the fit model


def _replica_id() -> tf.Tensor | int:
    context = tf.distribute.get_replica_context()
    return context.replica_id_in_sync_group if context is not None else 0


class AugmentedModel(keras.Model):
    """A functional twin of the model whose `train_step` augments the batch first.

    Built from `model.input`/`model.output`, so it shares every layer and
    weight; evaluation (`test_step`) and prediction see the images unchanged.
    Not registered for saving: save the model itself (or
    `callbacks.inference_model` of this one), never this twin.
    """

    def set_augmentation(self, spec: StepAugmentation, seed: int) -> None:
        self._dfd_augmentation = spec
        self._dfd_seed = int(seed)

    def train_step(self, data):
        spec = getattr(self, "_dfd_augmentation", None)
        if spec is not None and spec.active:
            images, labels, weights = keras.utils.unpack_x_y_sample_weight(data)
            seed = step_seed(self._dfd_seed, self.optimizer.iterations, _replica_id())
            images = augment_batch(images, seed, spec)
            data = keras.utils.pack_x_y_sample_weight(images, labels, weights)
        return super().train_step(data)


def training_model(
    model: keras.Model,
    config: config_lib.TrainConfig,
    *,
    model_class: type[AugmentedModel] = AugmentedModel,
) -> keras.Model:
    """The model `fit` should run: `model`'s layers and weights, augmenting in `train_step`.

    Call under the strategy's scope. Compile and fit the result; checkpoint,
    export and save `model` (or `callbacks.inference_model(result)`), which
    hold no augmentation.

    Args:
        model: the classifier (`model.build_model`).
        config: the run's configuration (flip, color_jitter, blur_probability, seed).
        model_class: an `AugmentedModel` subclass, for a twin that needs more
            overrides (the trainer's multi-worker work-arounds).

    Returns:
        `model` itself when nothing is augmented in the step and no subclass is
        asked for; otherwise a `model_class` twin.
    """
    if not issubclass(model_class, AugmentedModel):
        raise TypeError(f"model_class={model_class.__name__} is not an AugmentedModel subclass.")
    spec = StepAugmentation.from_config(config)
    if not spec.active and model_class is AugmentedModel:
        return model
    twin = model_class(model.input, model.output, name=model.name)
    twin.set_augmentation(spec, config.seed)
    return twin


# ----------------------------------------------------------------------------- host reference


def reference_gaussian_blur(
    image: tf.Tensor, sigma: tf.Tensor, radius: int = BLUR_RADIUS
) -> tf.Tensor:
    """Blurs one float [H, W, 3] image with a separable Gaussian of std `sigma` pixels.

    The per-image reference of `gaussian_blur_batch` (the TensorFlow op training
    runs); `trainer.evaluation.perturbations.pil_gaussian_blur` is the Pillow blur
    that robustness evaluation applies to JPEG files.
    """
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / tf.maximum(sigma, 1e-3)))
    kernel /= tf.reduce_sum(kernel)
    horizontal = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    vertical = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    x = image[tf.newaxis]
    x = tf.nn.depthwise_conv2d(x, horizontal, [1, 1, 1, 1], "SAME")
    x = tf.nn.depthwise_conv2d(x, vertical, [1, 1, 1, 1], "SAME")
    return x[0]


def reference_augment_image(image: tf.Tensor, config: config_lib.TrainConfig) -> tf.Tensor:
    """All four augmentations of one uint8 image, on the host: the reference of `augment_batch`.

    Training does not call it. The step's batched version is compared with it
    (tests/trainer/training/test_augment.py), and the input-pipeline benchmark
    measures it as the host-side alternative. Flip, colour jitter, blur and JPEG
    re-compression, in that order; stateful random ops.
    """
    if config.flip:
        image = tf.image.random_flip_left_right(image)
    if not (config.color_jitter or config.blur_probability or config.jpeg_quality_min):
        return image
    x = tf.image.convert_image_dtype(image, tf.float32)
    if config.color_jitter:
        strength = config.color_jitter
        x = tf.image.random_brightness(x, strength)
        x = tf.image.random_contrast(x, 1.0 - strength, 1.0 + strength)
        x = tf.image.random_saturation(x, 1.0 - strength, 1.0 + strength)
        x = tf.clip_by_value(x, 0.0, 1.0)
    if config.blur_probability:
        sigma = tf.random.uniform([], *BLUR_SIGMA_RANGE)
        x = tf.cond(
            tf.random.uniform([]) < config.blur_probability,
            lambda: reference_gaussian_blur(x, sigma),
            lambda: x,
        )
    if config.jpeg_quality_min:
        x = tf.cond(
            tf.random.uniform([]) < JPEG_PROBABILITY,
            lambda: tf.image.random_jpeg_quality(x, config.jpeg_quality_min, 100),
            lambda: x,
        )
        x = tf.ensure_shape(x, image.shape)
    return tf.image.convert_image_dtype(x, tf.uint8, saturate=True)
