"""The trainer's configuration: one frozen dataclass, validated before heavy work.

`trainer.task` folds its flags into a `TrainConfig`; tests and other tools
build one directly. Keeping every knob in one immutable object means the run
that was logged and saved to `<model_dir>/config.json` is the run that ran.
"""

from __future__ import annotations

import dataclasses
import json

import tensorflow as tf

from preprocessing import paths, schema
from trainer import export
from trainer import model as model_lib

BACKBONES = model_lib.BACKBONES
STRATEGIES = ("auto", "mirrored", "multi_worker_mirrored", "tpu", "one_device")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adamw", "sgd")
CONFIG_FILENAME = "config.json"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; see `trainer.task` flags for the meaning of each."""

    data_dir: str
    model_dir: str
    dataset: str = schema.DATASET_NAME
    train_split: str = "train"
    validation_split: str = "validation"
    # Devices.
    strategy: str = "auto"
    cpu_replicas: int = 0
    tpu: str = ""
    precision: str = "auto"
    # None: per strategy and device (`trainer.training.distribution.resolve_jit_compile`).
    jit_compile: bool | None = None
    # 0: per device kind (`trainer.training.distribution.resolve_steps_per_execution`).
    steps_per_execution: int = 0
    # Model.
    backbone: str = "resnet50"
    weights: str = "imagenet"
    image_size: int = 224
    dropout: float = 0.2
    fine_tune_from: str = "conv4"
    # Schedule.
    epochs: int = 10
    head_epochs: int = 2
    steps_per_epoch: int = 0  # 0: one pass over the training split.
    validation_steps: int = 0  # 0: the whole validation split.
    global_batch_size: int = 64
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    warmup_epochs: float = 0.5
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    momentum: float = 0.9
    # Input pipeline.
    shuffle_buffer: int = 10_000
    cache: bool = False
    deterministic: bool = False
    seed: int = 42
    min_crop_area: float = 0.25
    flip: bool = True
    jpeg_quality_min: int = 0  # 0 disables JPEG re-compression.
    blur_probability: float = 0.0
    color_jitter: float = 0.0
    # Outputs and fault tolerance.
    backup_every_steps: int = 0  # 0: back up at the end of each epoch only.
    backup_every_seconds: float = 0.0  # 0: no time-based backups.
    early_stopping_patience: int = 0  # 0 disables early stopping.
    # Re-pick the EER threshold even where export/detector.json holds dfd-evaluate's.
    reset_threshold: bool = False
    verbose: int = 1
    log_every_steps: int = 0  # 0: no step-based progress lines.
    log_every_seconds: float = 30.0  # 0: no time-based progress lines.

    @property
    def pretrained(self) -> bool:
        """Whether the backbone starts from trained weights worth protecting."""
        return self.weights.lower() != "none"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


# The numeric fields `validate` checks by range, in the order it checks them.
_POSITIVE = (
    "epochs",
    "global_batch_size",
    "image_size",
    "learning_rate",
    "fine_tune_learning_rate",
    "shuffle_buffer",
)
_NON_NEGATIVE = (
    "cpu_replicas",
    "head_epochs",
    "steps_per_epoch",
    "validation_steps",
    "warmup_epochs",
    "weight_decay",
    "backup_every_steps",
    "backup_every_seconds",
    "steps_per_execution",
    "log_every_steps",
    "log_every_seconds",
    "early_stopping_patience",
)
_FRACTIONS = ("dropout", "label_smoothing", "blur_probability", "color_jitter")


def validate(config: TrainConfig) -> None:
    """Checks values that need no devices and no data; raises ValueError naming the bad one.

    The checks that need the file system (dataset present, model_dir writable)
    and the replica count live in `check_environment` and `trainer.training.train_lib`.
    """
    _check_choices(config)
    _check_ranges(config)
    _check_combinations(config)
    if not config.data_dir:
        raise ValueError("--data_dir is required: the TFDS data dir that dfd-build-dataset wrote.")
    if not config.model_dir:
        raise ValueError("--model_dir is required: where checkpoints and the export go.")


def _check_choices(config: TrainConfig) -> None:
    """Each enumerated setting is one of the values its flag accepts."""
    for name, accepted in (
        ("backbone", BACKBONES),
        ("strategy", STRATEGIES),
        ("precision", PRECISIONS),
        ("optimizer", OPTIMIZERS),
    ):
        value = getattr(config, name)
        if value not in accepted:
            raise ValueError(f"--{name}={value!r} is not one of {list(accepted)}.")


def _check_ranges(config: TrainConfig) -> None:
    """Each numeric setting lies in its range."""
    for name in _POSITIVE:
        value = getattr(config, name)
        if value <= 0:
            raise ValueError(f"--{name}={value} must be > 0.")
    for name in _NON_NEGATIVE:
        value = getattr(config, name)
        if value < 0:
            raise ValueError(f"--{name}={value} must be >= 0.")
    if not export.MIN_IMAGE_SIZE <= config.image_size <= export.MAX_IMAGE_SIZE:
        # The export's detector.json must pass `export.validate_metadata` in every tool.
        raise ValueError(
            f"--image_size={config.image_size} must be in [{export.MIN_IMAGE_SIZE}, "
            f"{export.MAX_IMAGE_SIZE}]: the export's consumers refuse other sizes."
        )
    for name in _FRACTIONS:
        value = getattr(config, name)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"--{name}={value} must be in [0, 1).")
    if not 0.0 < config.min_crop_area <= 1.0:
        raise ValueError(f"--min_crop_area={config.min_crop_area} must be in (0, 1].")
    if config.jpeg_quality_min and not 1 <= config.jpeg_quality_min <= 100:
        raise ValueError(
            f"--jpeg_quality_min={config.jpeg_quality_min} must be 0 (off) or in [1, 100]."
        )


def _check_combinations(config: TrainConfig) -> None:
    """Settings that are valid alone but not together."""
    if config.backbone == "tiny" and config.weights.lower() == "imagenet":
        raise ValueError(
            "--backbone=tiny has no ImageNet weights; pass --weights=none or a local .weights.h5."
        )
    if config.pretrained and config.head_epochs >= config.epochs:
        raise ValueError(
            f"--head_epochs={config.head_epochs} leaves no fine-tuning epoch out of "
            f"--epochs={config.epochs}; raise --epochs or lower --head_epochs."
        )


def check_environment(config: TrainConfig, *, write: bool = True) -> None:
    """Fails fast when the dataset is missing or model_dir cannot be written.

    Args:
        config: the run's configuration.
        write: probe `model_dir` with a small file (non-chief workers skip it).

    Raises:
        FileNotFoundError: no dataset named `config.dataset` under `config.data_dir`.
        PermissionError: `config.model_dir` is not writable.
    """
    name = config.dataset.split(":")[0]
    dataset_root = paths.join(config.data_dir, name)
    if not tf.io.gfile.isdir(dataset_root):
        raise FileNotFoundError(
            f"No TFDS dataset {name!r} under --data_dir={config.data_dir} (looked for "
            f"{dataset_root}). Fix: build it with `dfd-build-dataset --data_dir="
            f"{config.data_dir} ...` (or `make demo`), or point --data_dir at the folder "
            "that holds it."
        )
    if write:
        paths.ensure_writable(config.model_dir)


# Fields that change how a run reports or where it runs, not what it trains.
_NOT_TRAINING_SETTINGS = frozenset(
    {"verbose", "log_every_steps", "log_every_seconds", "reset_threshold", "data_dir", "tpu"}
)


def load_saved(model_dir: str) -> dict | None:
    """The `config.json` an earlier run left in `model_dir`, or None."""
    path = paths.join(model_dir, CONFIG_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def changed_settings(saved: dict | None, config: TrainConfig) -> list[str]:
    """'name old -> new' for each training setting that differs from an earlier run's."""
    if not saved:
        return []
    current = dataclasses.asdict(config)
    return [
        f"{name} {saved[name]!r} -> {current[name]!r}"
        for name in sorted(current)
        if name in saved and name not in _NOT_TRAINING_SETTINGS and saved[name] != current[name]
    ]


def save(config: TrainConfig) -> str:
    """Writes the configuration to `<model_dir>/config.json`; returns the path."""
    path = paths.join(config.model_dir, CONFIG_FILENAME)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(config.to_json())
    return path
