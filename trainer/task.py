"""Trains the real-vs-fake detector: `python -m trainer.task` or `dfd-train`.

    dfd-train --data_dir=gs://bucket/tfds --model_dir=gs://bucket/runs/r1 \\
        --flagfile=deploy/configs/140k_resnet50_1gpu.cfg

The same command runs on a CPU, one GPU, the GPUs of one machine, several
machines (TF_CONFIG) or a TPU; `--strategy=auto` picks from what is visible.
Flags live here only: `main` folds them into a `TrainConfig`, and the library
(`trainer.training.train_lib.run`) never reads FLAGS.
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
import dataclasses
import sys

from absl import app, flags

from preprocessing import cli, schema
from trainer.training import config as config_lib
from trainer.training import console

FLAGS = flags.FLAGS
_DEFAULTS = config_lib.TrainConfig(data_dir="", model_dir="")


def _define_data_flags() -> None:
    """Data and outputs."""
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
    flags.DEFINE_string(
        "dataset",
        schema.DATASET_NAME,
        "TFDS dataset name[/config][:version]: real_and_fake_faces (its keep_duplicates "
        "config), real_and_fake_faces/drop_duplicates, video_faces, or ...:1.1.0 to pin a "
        "version.",
    )
    flags.DEFINE_string("train_split", _DEFAULTS.train_split, "Split to train on.")
    flags.DEFINE_string(
        "validation_split",
        _DEFAULTS.validation_split,
        "Split for validation (best checkpoint, early stopping, EER threshold).",
    )


def _define_devices_flags() -> None:
    """Devices."""
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
        "auto: mixed_float16 on GPUs (the faster one there, BENCHMARKS.md; its loss scaling "
        "reduces the overflow check across all replicas and workers), mixed_bfloat16 on TPUs "
        "(bfloat16 has float32's range: no loss scaling), float32 on CPUs (reduced precision is "
        "usually slower there, not faster).",
    )
    flags.DEFINE_bool(
        "jit_compile",
        _DEFAULTS.jit_compile,
        "Compile train steps with XLA. Unset: on for TPUs and a single GPU, off with several "
        "replicas (open Keras 3 + tf.distribute + XLA breakages; it fails on split CPU "
        "devices) and on CPUs. --jit_compile / --nojit_compile force it.",
    )
    flags.DEFINE_integer(
        "steps_per_execution",
        _DEFAULTS.steps_per_execution,
        "Train steps per call into the compiled step function (Keras returns to Python, and "
        "runs batch callbacks, once per call). 0: 1 on CPU (a step dwarfs the round trip), 8 "
        "on GPUs, 32 on TPU (a fast device would idle between steps). Under (multi-worker) "
        "MirroredStrategy the steps run in the trainer's own loop "
        "(training/keras_workarounds/multi_step.py: Keras 3.15's fails there, keras #19246). "
        "Lowered per phase to a divisor of the epoch length.",
    )


def _define_model_flags() -> None:
    """Model."""
    flags.DEFINE_enum(
        "backbone",
        _DEFAULTS.backbone,
        list(config_lib.BACKBONES),
        "Backbone. tiny: a ~9k-weight CNN with the same stages/contract, for smoke runs and tests "
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


def _define_schedule_flags() -> None:
    """Schedule and regularisation."""
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
        "fine_tune_learning_rate",
        _DEFAULTS.fine_tune_learning_rate,
        "Peak learning rate of phase 2.",
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


def _define_input_pipeline_flags() -> None:
    """Input pipeline and augmentation."""
    flags.DEFINE_integer(
        "shuffle_buffer", _DEFAULTS.shuffle_buffer, "Examples in the shuffle buffer."
    )
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


def _define_fault_tolerance_flags() -> None:
    """Fault tolerance and output."""
    flags.DEFINE_integer(
        "backup_every_steps",
        _DEFAULTS.backup_every_steps,
        "Also back up every N steps inside an epoch (mid-epoch resume); 0: epoch ends only.",
    )
    flags.DEFINE_float(
        "backup_every_seconds",
        _DEFAULTS.backup_every_seconds,
        "Also back up inside an epoch when this many seconds passed since the last backup (chief "
        "only); 0: off. Bounds backup cost on fast hardware, where a step count comes every few s.",
    )
    flags.DEFINE_bool(
        "reset_threshold",
        _DEFAULTS.reset_threshold,
        "Re-pick the validation EER threshold even when export/detector.json holds one chosen by "
        "dfd-evaluate and this run trained nothing new (by default that one is kept).",
    )
    flags.DEFINE_integer(
        "verbose",
        _DEFAULTS.verbose,
        "Progress: 0 silent; 1 Keras' bar on a terminal, else plain lines (step, loss, images/s, "
        "ETA) every --log_every_seconds/--log_every_steps and one per epoch; 2 one line per epoch.",
    )
    flags.DEFINE_integer(
        "log_every_steps", _DEFAULTS.log_every_steps, "Progress line every N steps; 0: off."
    )
    flags.DEFINE_float(
        "log_every_seconds",
        _DEFAULTS.log_every_seconds,
        "Progress line every N seconds; 0: off.",
    )


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands.

    A second call is a no-op (tests that parse dfd-train's flags in one process).
    """
    if "backbone" in FLAGS:
        return
    _define_data_flags()
    _define_devices_flags()
    _define_model_flags()
    _define_schedule_flags()
    _define_input_pipeline_flags()
    _define_fault_tolerance_flags()
    flags.mark_flags_as_required(["data_dir", "model_dir"])


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> config_lib.TrainConfig:
    """Folds the parsed flags into a TrainConfig (one field per flag of the same name)."""
    fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    return config_lib.TrainConfig(**{name: flag_values[name].value for name in fields})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}; every option is a --flag.")
    config = config_from_flags()
    config_lib.validate(config)
    from trainer.training import train_lib  # Heavy imports after the cheap checks.

    log_file = console.configure_console(config.model_dir, FLAGS.verbosity)

    def announce(run_setup) -> None:
        print(console.start_summary(run_setup), flush=True)
        if log_file:
            print(f"  (TensorFlow/Keras messages: {log_file}; --verbosity=1 shows them here)")

    result = train_lib.run(config, on_setup=announce)
    print(console.done_summary(result), flush=True)


def run_main():
    define_flags()
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-train",
        extra_user_errors=(FloatingPointError,),
    )


if __name__ == "__main__":
    run_main()
