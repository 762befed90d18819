"""The classifier: a Keras application backbone, its own input preprocessing, a logit head.

The model takes uint8 RGB pixels and returns one float32 logit per image
(positive = "fake"). It carries the backbone's normalisation inside a
registered layer, so every consumer (evaluation, the SavedModel export, a
user's script) feeds plain pixels and never needs to know that ResNet50 wants
BGR with the ImageNet means subtracted. No `Lambda` layers: the `.keras` file
loads with `safe_mode=True`.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

TINY_BACKBONE = "tiny"
# Channels of the tiny backbone's five stages (stride 2 each: 32 px -> 1 px).
_TINY_WIDTHS = (8, 8, 16, 16, 32)


def tiny_backbone(
    *, include_top: bool = False, weights=None, input_shape=(32, 32, 3)
) -> keras.Model:
    """A five-stage CNN (~9k weights), keras.applications contract: for tests and smoke runs.

    It goes through every line of the real recipe (preprocessing layer, nested
    backbone, BatchNorm frozen in the head phase, `--fine_tune_from` stages,
    local weights files, export) while a step costs milliseconds instead of a
    ResNet50's seconds. Its stages are named `conv1`..`conv5` like ResNet50's, so
    the default `--fine_tune_from=conv4` works with it. Not a detector for real
    data: use it to check that a pipeline runs, never to judge accuracy.

    Args:
        include_top: must be False (there is no classifier top to include).
        weights: None (random) or a local `.weights.h5` file of this backbone;
            there are no ImageNet weights for it.
        input_shape: (height, width, 3).
    """
    if include_top:
        raise ValueError("The tiny backbone has no top; build it with include_top=False.")
    if weights == "imagenet":
        raise ValueError(
            "--backbone=tiny has no ImageNet weights; use --weights=none or a local .weights.h5 "
            "saved from a tiny backbone."
        )
    inputs = keras.Input(input_shape)
    x = inputs
    for stage, width in enumerate(_TINY_WIDTHS, start=1):
        x = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", use_bias=False, name=f"conv{stage}_conv"
        )(x)
        x = keras.layers.BatchNormalization(name=f"conv{stage}_bn")(x)
        x = keras.layers.Activation("relu", name=f"conv{stage}_relu")(x)
    model = keras.Model(inputs, x, name=TINY_BACKBONE)
    if weights is not None:
        model.load_weights(weights)
    return model


# Backbone name -> (constructor, preprocessing mode of `ImagePreprocessing`).
_BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "caffe"),
    "xception": (keras.applications.Xception, "tf"),
    "efficientnetv2s": (keras.applications.EfficientNetV2S, "raw"),
    TINY_BACKBONE: (tiny_backbone, "tf"),
}
# Layer name each constructor gives its model (EfficientNetV2 derives its block
# layout from the name, so it cannot be renamed).
_LAYER_NAMES = {
    "resnet50": "resnet50",
    "xception": "xception",
    "efficientnetv2s": "efficientnetv2-s",
    TINY_BACKBONE: TINY_BACKBONE,
}
# What --backbone accepts ("tiny" is for tests and smoke runs: see `tiny_backbone`).
BACKBONES = tuple(_BACKBONES)
# The stage names a user can pass to --fine_tune_from, per backbone (layer-name prefixes).
STAGES = {
    "resnet50": ("conv1", "conv2", "conv3", "conv4", "conv5"),
    "xception": tuple(f"block{i}" for i in range(1, 15)),
    "efficientnetv2s": tuple(f"block{i}" for i in range(1, 7)) + ("top",),
    TINY_BACKBONE: ("conv1", "conv2", "conv3", "conv4", "conv5"),
}
HEAD_PHASE = "head"
FINE_TUNE_PHASE = "fine_tune"
FULL_PHASE = "full"
LOGIT_LAYER = "logit"
# The Keras package every serializable class of the trainer registers under: saved
# files name each class `dfd>ClassName`.
KERAS_PACKAGE = "dfd"


@keras.saving.register_keras_serializable(package=KERAS_PACKAGE)
class ImagePreprocessing(keras.layers.Layer):
    """uint8 RGB -> the float input a backbone was trained on.

    Modes:
        caffe: RGB->BGR and ImageNet mean subtraction (ResNet50).
        tf: scale to [-1, 1] (Xception).
        raw: float [0, 255] unchanged (EfficientNetV2 normalises inside itself).

    Runs in float32 whatever the global policy: the mean subtraction is done at
    full precision and the backbone's first layer casts to its compute dtype.
    """

    MODES = ("caffe", "tf", "raw")
    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "caffe", **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"ImagePreprocessing mode {mode!r} is not one of {list(self.MODES)}.")
        self.mode = mode

    def call(self, images):
        x = keras.ops.cast(images, "float32")
        if self.mode == "caffe":
            x = x[..., ::-1] - keras.ops.convert_to_tensor(self._CAFFE_MEAN_BGR, "float32")
        elif self.mode == "tf":
            x = x / 127.5 - 1.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


# The no-top ImageNet weights Keras downloads for each backbone: (folder URL, file name).
_IMAGENET_FILES = {
    "resnet50": (
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "xception": (
        "https://storage.googleapis.com/tensorflow/keras-applications/xception/",
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "efficientnetv2s": (
        "https://storage.googleapis.com/tensorflow/keras-applications/efficientnet_v2/",
        "efficientnetv2-s_notop.h5",
    ),
}


def keras_cache_path(file_name: str) -> str:
    """Where Keras looks for a downloaded weights file before fetching it."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", file_name)


def ensure_imagenet_weights(backbone: str) -> str:
    """Makes sure Keras can load `backbone`'s ImageNet weights; returns the cached file's path.

    Run before any heavy work: offline (or behind a proxy) the download fails
    deep inside the model build with a long traceback. Here it fails in one line
    naming the file and the three ways out.

    Raises:
        ValueError: the backbone has no ImageNet weights.
        FileNotFoundError: the file is neither cached nor downloadable.
    """
    if backbone not in _IMAGENET_FILES:
        raise ValueError(f"--backbone={backbone} has no ImageNet weights; use --weights=none.")
    folder, file_name = _IMAGENET_FILES[backbone]
    cached = keras_cache_path(file_name)
    if os.path.exists(cached):
        return cached
    try:
        return keras.utils.get_file(file_name, folder + file_name, cache_subdir="models")
    except Exception as error:  # noqa: BLE001  Keras raises a bare Exception for URL failures.
        reason = " ".join(str(error).split())[:200]
        raise FileNotFoundError(
            f"Cannot download the ImageNet weights of --backbone={backbone} ({file_name}: "
            f"{reason}). Fix: train from scratch with --weights=none; or pass a local no-top "
            f"file with --weights=/path/to/{file_name}; or copy {file_name} (from "
            f"{folder + file_name}) to {cached} so Keras finds it in its cache."
        ) from None


def _backbone_weights(weights: str):
    """Maps the --weights value to what keras.applications expects; checks local files."""
    if weights.lower() == "none":
        return None
    if weights.lower() == "imagenet":
        return "imagenet"
    if not tf.io.gfile.exists(weights):
        raise FileNotFoundError(
            f"--weights={weights} is neither 'imagenet', 'none' nor an existing weights file. "
            "Fix: pass the path of a no-top `.weights.h5` for the chosen --backbone."
        )
    return weights


def build_model(
    backbone: str = "resnet50",
    *,
    image_size: int = 224,
    weights: str = "imagenet",
    dropout: float = 0.2,
) -> keras.Model:
    """Builds the classifier (uncompiled).

    Call under the strategy's scope and after the precision policy is set.

    Args:
        backbone: one of `BACKBONES`.
        image_size: side of the square input.
        weights: 'imagenet' (Keras downloads them), 'none' (random init) or a local
            no-top weights file.
        dropout: dropout rate before the logit.

    Returns:
        keras.Model: uint8 [batch, image_size, image_size, 3] -> float32 logits [batch, 1].
    """
    if backbone not in _BACKBONES:
        raise ValueError(f"--backbone={backbone!r} is not one of {list(BACKBONES)}.")
    constructor, mode = _BACKBONES[backbone]
    kwargs = {
        "include_top": False,
        "weights": _backbone_weights(weights),
        "input_shape": (image_size, image_size, 3),
    }
    if backbone == "efficientnetv2s":
        kwargs["include_preprocessing"] = True
    base = constructor(**kwargs)

    images = keras.Input((image_size, image_size, 3), dtype="uint8", name="images")
    x = ImagePreprocessing(mode, name="preprocessing")(images)
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 whatever the policy: a float16 logit saturates and the loss needs full precision.
    # Zero-initialised: the first steps start from p_fake = 0.5 instead of a random
    # logit, which keeps a from-scratch backbone from being pushed around by the head.
    logits = keras.layers.Dense(1, dtype="float32", kernel_initializer="zeros", name=LOGIT_LAYER)(x)
    return keras.Model(images, logits, name=f"dfd_{backbone}")


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone sub-model inside a model made by `build_model`."""
    for layer in model.layers:
        if layer.name in _LAYER_NAMES.values():
            return layer
    raise ValueError(
        f"Model {model.name!r} has no backbone layer named one of {list(_LAYER_NAMES.values())}."
    )


def set_phase(model: keras.Model, phase: str, *, fine_tune_from: str = "conv4") -> None:
    """Sets what trains in each phase of the recipe (recompile afterwards).

    - `head`: backbone frozen; frozen BatchNorm layers run in inference mode, so
      the pretrained statistics are not disturbed by the random head's gradients.
    - `fine_tune`: layers from the `fine_tune_from` stage on train, at a lower
      learning rate; BatchNorm stays frozen, because small fine-tuning batches
      would wreck the statistics the pretrained weights depend on.
    - `full`: everything trains, BatchNorm included. Used with `--weights=none`:
      there is nothing pretrained to protect, and a randomly initialised network
      needs its BatchNorm statistics to follow the data.

    Raises:
        ValueError: naming an unknown phase or a stage that is not in the backbone.
    """
    base = backbone_of(model)
    if phase == FULL_PHASE:
        base.trainable = True
        for layer in base.layers:
            layer.trainable = True
        return
    if phase == HEAD_PHASE:
        base.trainable = False
        return
    if phase != FINE_TUNE_PHASE:
        raise ValueError(
            f"Phase {phase!r} is not one of {[HEAD_PHASE, FINE_TUNE_PHASE, FULL_PHASE]}."
        )
    start = stage_start(base, fine_tune_from)
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start and not isinstance(layer, keras.layers.BatchNormalization)


def stage_start(base: keras.Model, stage: str) -> int:
    """Index of the first backbone layer of `stage` ('all' = 0)."""
    if stage == "all":
        return 0
    for index, layer in enumerate(base.layers):
        if (
            layer.name.startswith(stage + "_")
            or layer.name == stage
            or (layer.name.startswith(stage) and layer.name[len(stage) : len(stage) + 1].isalpha())
        ):
            return index
    stages = next((STAGES[k] for k, v in _LAYER_NAMES.items() if v == base.name), ())
    raise ValueError(
        f"--fine_tune_from={stage!r} names no layer of backbone {base.name!r}; use 'all' or one "
        f"of {list(stages)}."
    )
