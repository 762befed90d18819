"""Trains the real-vs-fake detector: `python -m trainer.task` or `dfd-train`.

    dfd-train --data_dir=gs://bucket/tfds --model_dir=gs://bucket/runs/r1 \\
        --flagfile=deploy/configs/140k_resnet50_1gpu.cfg

The same command runs on a CPU, one GPU, the GPUs of one machine, several
machines (TF_CONFIG) or a TPU; `--strategy=auto` picks from what is visible.
Flags live here only: `main` folds them into a `TrainConfig`, and the library
(`trainer.train.run`) never reads FLAGS.
"""

from __future__ import annotations

import dataclasses
import sys

from absl import app, flags

from preprocessing import cli, schema
from trainer import config as config_lib

_DEFAULTS = config_lib.TrainConfig(data_dir="", model_dir="")

# ---- Data and outputs.
flags.DEFINE_string(
    "data_dir",
    None,
    "TFDS data dir holding the dataset built by dfd-build-dataset (local or gs://).",
)
flags.DEFINE_string(
    "model_dir",
    None,
    "Where checkpoints, backup/, logs/, history.csv, export/ and model.keras go (local or gs://).",
)
flags.DEFINE_string("dataset", schema.DATASET_NAME, "TFDS dataset name[:version].")
flags.DEFINE_string("train_split", _DEFAULTS.train_split, "Split to train on.")
flags.DEFINE_string(
    "validation_split",
    _DEFAULTS.validation_split,
    "Split for validation (best checkpoint, early stopping, EER threshold).",
)

# ---- Devices.
flags.DEFINE_enum(
    "strategy",
    _DEFAULTS.strategy,
    list(config_lib.STRATEGIES),
    "Distribution strategy; auto: TPU if given/visible, multi-worker if "
    "TF_CONFIG lists several workers, mirrored with several GPUs (or CPU "
    "replicas), else one device.",
)
flags.DEFINE_integer(
    "cpu_replicas",
    _DEFAULTS.cpu_replicas,
    "Split the CPU into N logical devices (MirroredStrategy without GPUs).",
)
flags.DEFINE_string("tpu", _DEFAULTS.tpu, "TPU name or grpc:// address ('' = local).")
flags.DEFINE_enum(
    "precision",
    _DEFAULTS.precision,
    list(config_lib.PRECISIONS),
    "auto: mixed_float16 on GPU, mixed_bfloat16 on TPU, float32 on CPU.",
)
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "Compile train steps with XLA.")

# ---- Model.
flags.DEFINE_enum(
    "backbone",
    _DEFAULTS.backbone,
    list(config_lib.BACKBONES),
    "Backbone. tiny: a ~11k-weight CNN with the same stages/contract, for smoke runs and tests "
    "(fast; not a detector for real data; no ImageNet weights).",
)
flags.DEFINE_string(
    "weights",
    _DEFAULTS.weights,
    "imagenet (downloaded by Keras), none (train from scratch), or a "
    "local no-top .weights.h5 file.",
)
flags.DEFINE_integer("image_size", _DEFAULTS.image_size, "Square input side in pixels.")
flags.DEFINE_float("dropout", _DEFAULTS.dropout, "Dropout before the logit.")
flags.DEFINE_string(
    "fine_tune_from",
    _DEFAULTS.fine_tune_from,
    "First backbone stage unfrozen in phase 2 (resnet50: conv1..conv5; "
    "xception: block1..block14; efficientnetv2s: block1..block6, top; or all).",
)

# ---- Schedule and regularisation.
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Total epochs, both phases.")
flags.DEFINE_integer(
    "head_epochs",
    _DEFAULTS.head_epochs,
    "Phase 1 epochs (head only, backbone frozen); ignored with --weights=none.",
)
flags.DEFINE_integer(
    "steps_per_epoch",
    _DEFAULTS.steps_per_epoch,
    "Steps per epoch; 0: one pass over the training split.",
)
flags.DEFINE_integer(
    "validation_steps",
    _DEFAULTS.validation_steps,
    "Validation batches per epoch; 0: the whole split.",
)
flags.DEFINE_integer(
    "global_batch_size",
    _DEFAULTS.global_batch_size,
    "Batch over all replicas; must divide by the replica count.",
)
flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer, list(config_lib.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float(
    "learning_rate",
    _DEFAULTS.learning_rate,
    "Peak learning rate of phase 1 (or of the single from-scratch phase).",
)
flags.DEFINE_float(
    "fine_tune_learning_rate", _DEFAULTS.fine_tune_learning_rate, "Peak learning rate of phase 2."
)
flags.DEFINE_float(
    "warmup_epochs",
    _DEFAULTS.warmup_epochs,
    "Linear warm-up, in epochs, at the start of each phase; then cosine decay.",
)
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "Decoupled weight decay.")
flags.DEFINE_float("label_smoothing", _DEFAULTS.label_smoothing, "Label smoothing.")
flags.DEFINE_float("momentum", _DEFAULTS.momentum, "SGD momentum (Nesterov).")
flags.DEFINE_integer(
    "early_stopping_patience",
    _DEFAULTS.early_stopping_patience,
    "Stop a phase after N epochs without val_auc improvement; 0: off.",
)

# ---- Input pipeline and augmentation.
flags.DEFINE_integer("shuffle_buffer", _DEFAULTS.shuffle_buffer, "Examples in the shuffle buffer.")
flags.DEFINE_bool("cache", _DEFAULTS.cache, "Cache the JPEG bytes in memory after one pass.")
flags.DEFINE_bool(
    "deterministic",
    _DEFAULTS.deterministic,
    "Keep element order through the parallel decode (slower).",
)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed for shuffling and initialisation.")
flags.DEFINE_float(
    "min_crop_area",
    _DEFAULTS.min_crop_area,
    "Smallest random crop, as a fraction of the image area.",
)
flags.DEFINE_bool("flip", _DEFAULTS.flip, "Random horizontal flips.")
flags.DEFINE_integer(
    "jpeg_quality_min",
    _DEFAULTS.jpeg_quality_min,
    "Re-compress half the images as JPEG at quality [N, 100]; 0: off.",
)
flags.DEFINE_float(
    "blur_probability", _DEFAULTS.blur_probability, "Probability of a random Gaussian blur."
)
flags.DEFINE_float(
    "color_jitter",
    _DEFAULTS.color_jitter,
    "Brightness/contrast/saturation jitter strength; 0: off.",
)

# ---- Fault tolerance and output.
flags.DEFINE_integer(
    "backup_every_steps",
    _DEFAULTS.backup_every_steps,
    "Also back up every N steps inside an epoch (mid-epoch resume); 0: epoch ends only.",
)
flags.DEFINE_integer("verbose", _DEFAULTS.verbose, "Keras progress: 0 silent, 1 bar, 2 line.")

flags.mark_flags_as_required(["data_dir", "model_dir"])

FLAGS = flags.FLAGS


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> config_lib.TrainConfig:
    """Folds the parsed flags into a TrainConfig (one field per flag of the same name)."""
    fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    return config_lib.TrainConfig(**{name: flag_values[name].value for name in fields})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}; every option is a --flag.")
    config = config_from_flags()
    config_lib.validate(config)
    import tensorflow as tf

    from trainer import train  # Heavy imports after the cheap checks.

    # TensorFlow logs every cross-device reduction at INFO; keep the user's
    # console for our summary and Keras' progress. Its warnings still show.
    tf.get_logger().setLevel("WARNING")

    train.run(config)


def run_main():
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-train",
        extra_user_errors=(FloatingPointError,),
    )


if __name__ == "__main__":
    run_main()
