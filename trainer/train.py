"""The training run: `run(config, *, strategy=None, datasets=None) -> dict`.

`trainer.task` (the command line) builds a `TrainConfig` and calls `run`;
tests and the demo call `run` directly and may inject a strategy or datasets.

Order of a run, and why:
1. Validate the config, create the strategy, check the replica count, the
   dataset and model_dir: cheap failures before anything heavy.
2. Set the precision policy, then build the model under the strategy scope
   (Keras reads the policy when layers are created).
3. Read `<model_dir>/backup/state.json`: a killed run resumes in its phase,
   epoch and step, with weights and optimizer state restored and the input
   already consumed in that epoch skipped.
4. Train each phase of the recipe (head, then fine-tune; or one `full` phase
   from scratch), each with its own optimizer and learning-rate schedule.
5. Reload the best checkpoint (by validation AUC), pick the validation EER
   threshold, and (chief only) write `export/` and `model.keras`.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from preprocessing import paths
from trainer import augment, data, distribution, export, precision
from trainer import callbacks as callbacks_lib
from trainer import config as config_lib
from trainer import metrics as metrics_lib
from trainer import model as model_lib

BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
HISTORY_CSV = "history.csv"
MONITOR = "val_auc"


@dataclasses.dataclass(frozen=True)
class Phase:
    """Epochs [start, end) trained with one set of trainable layers and one optimizer."""

    name: str
    start: int
    end: int
    learning_rate: float


def plan_phases(config: config_lib.TrainConfig) -> list[Phase]:
    """Head then fine-tune for pretrained weights; one full phase from scratch."""
    if not config.pretrained:
        return [Phase(model_lib.FULL_PHASE, 0, config.epochs, config.learning_rate)]
    phases = []
    if config.head_epochs:
        phases.append(Phase(model_lib.HEAD_PHASE, 0, config.head_epochs, config.learning_rate))
    phases.append(
        Phase(
            model_lib.FINE_TUNE_PHASE,
            config.head_epochs,
            config.epochs,
            config.fine_tune_learning_rate,
        )
    )
    return phases


def make_optimizer(
    config: config_lib.TrainConfig, learning_rate: float, total_steps: int
) -> keras.optimizers.Optimizer:
    """AdamW or SGD with linear warm-up then cosine decay over `total_steps`."""
    warmup = min(int(config.warmup_epochs * total_steps / max(1, config.epochs)), total_steps - 1)
    warmup = max(warmup, 0)
    if warmup:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate * 0.01,
            decay_steps=max(1, total_steps - warmup),
            warmup_target=learning_rate,
            warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate, decay_steps=max(1, total_steps)
        )
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay or None,
        )
    # Decaying biases and BatchNorm scales only fights the normalisation.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_model(
    model: keras.Model, config: config_lib.TrainConfig, phase: Phase, steps_per_epoch: int
) -> None:
    """Compiles for `phase`: logit loss in float32, the "fake"-class metrics."""
    total_steps = (phase.end - phase.start) * steps_per_epoch
    # Warm-up measured in epochs of this phase.
    warmup_config = dataclasses.replace(config, epochs=phase.end - phase.start)
    model.compile(
        optimizer=precision.for_compile(
            make_optimizer(warmup_config, phase.learning_rate, total_steps), model.dtype_policy
        ),
        loss=keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=[
            # The model outputs logits: threshold 0 is p_fake = 0.5.
            keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),
            keras.metrics.AUC(from_logits=True, name="auc"),
            keras.metrics.Precision(thresholds=0.0, name="precision"),
            keras.metrics.Recall(thresholds=0.0, name="recall"),
        ],
        jit_compile=config.jit_compile,
    )


class _MultiWorkerModel(augment.AugmentedModel):
    """The same layers as the model, with two Keras 3.15 multi-worker bugs worked around.

    Used for `fit` only under MultiWorkerMirroredStrategy; it shares every layer
    (and so every weight) with the model that is checkpointed and exported.

    1. `fit`/`evaluate` first average one input batch across replicas to learn
       its shapes. Across workers that is a collective all-reduce of the
       (images, labels) tuple, which is refused for nested values and for uint8.
       The shapes are known, so the model is built from zeros instead.
    2. Each step's logs (scalars) are averaged across workers with
       `strategy.reduce("MEAN", v, axis=0)`, which fails on 0-d values
       (tensorflow#72388). Returning them as 1-element vectors makes that
       reduce valid; its result is a scalar again, so callbacks see the usual logs.
    """

    def configure(self, strategy: tf.distribute.Strategy, example_batch) -> None:
        self._dfd_strategy = strategy
        self._dfd_example = example_batch

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        del iterator, data_batch  # Shapes and dtypes come from the example batch.
        with self._dfd_strategy.scope():
            self._symbolic_build(data_batch=self._dfd_example)

    def train_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().train_step(data).items()}

    def test_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().test_step(data).items()}


def _fit_model(
    model: keras.Model, strategy: tf.distribute.Strategy, config: config_lib.TrainConfig
) -> keras.Model:
    """The model to call `fit` on: `model`'s twin that augments in its train step.

    Same layers and weights as `model` (`trainer.augment.training_model`); under
    MultiWorkerMirroredStrategy it also carries the multi-worker work-arounds.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        with strategy.scope():
            return augment.training_model(model, config)
    batch = config.global_batch_size // strategy.num_replicas_in_sync
    example = (
        np.zeros((batch, config.image_size, config.image_size, 3), np.uint8),
        np.zeros((batch, 1), np.float32),
    )
    with strategy.scope():
        twin = augment.training_model(model, config, model_class=_MultiWorkerModel)
    twin.configure(strategy, example)
    return twin


def _summary(title: str, rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [f"== {title}"] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def _validation_scores(model: keras.Model, dataset: tf.data.Dataset, steps: int | None):
    """(labels, p_fake) over the validation split, computed by this process alone."""
    predict = tf.function(
        lambda images: tf.sigmoid(tf.cast(model(images, training=False), tf.float32))
    )
    labels, scores = [], []
    for index, (images, batch_labels) in enumerate(dataset):
        if steps and index >= steps:
            break
        scores.append(predict(images).numpy().ravel())
        labels.append(batch_labels.numpy().ravel())
    return np.concatenate(labels), np.concatenate(scores)


def run(
    config: config_lib.TrainConfig,
    *,
    strategy: tf.distribute.Strategy | None = None,
    datasets: dict | None = None,
) -> dict:
    """Trains, checkpoints, exports. See the module docstring for the order of things.

    Args:
        config: the run's configuration.
        strategy: use this strategy instead of `config.strategy` (tests).
        datasets: {"train": ..., "validation": ...} datasets (tf.data or distributed)
            to use instead of the TFDS dataset; needs `config.steps_per_epoch`.
            Mid-epoch resume does not skip input of injected datasets.

    Returns:
        dict with the artifact paths (`model_dir`, `export_dir`, `keras_model`,
        `best_checkpoint`, `history_csv`), `best_epoch` (1-based), `best_metrics`,
        `threshold`, `threshold_source`, `validation_eer`, `epochs_completed`,
        `steps_per_epoch`, `history` (rows of history.csv) and `is_chief`.

    Raises:
        ValueError, FileNotFoundError, PermissionError: bad configuration, with the fix.
    """
    config_lib.validate(config)
    # Validation reads its split to the end by design; Keras warns about that
    # every time. The training stream is sized exactly, so it never runs out.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    strategy = strategy or distribution.get_strategy(
        config.strategy, cpu_replicas=config.cpu_replicas, tpu=config.tpu
    )
    replicas = strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
        lower = config.global_batch_size // replicas * replicas or replicas
        raise ValueError(
            f"--global_batch_size={config.global_batch_size} is not divisible by the {replicas} "
            f"replicas of {type(strategy).__name__}; use a multiple of {replicas}, e.g. {lower}."
        )
    if config.jit_compile and replicas > 1:
        logging.warning(
            "--jit_compile with %d replicas: XLA under Keras 3 + tf.distribute has open breakages "
            "(keras #17187, tensorflow #56423; on split CPUs it fails with 'Trying to access "
            "resource ... replica_1'). If the first step fails, drop --jit_compile.",
            replicas,
        )
    chief = distribution.is_chief(strategy)
    builder = None
    if datasets is None:
        config_lib.check_environment(config, write=chief)
        builder = data.load_builder(config.data_dir, config.dataset)
        train_examples = data.num_examples(builder, config.train_split)
        validation_examples = data.num_examples(builder, config.validation_split)
        steps_per_epoch = config.steps_per_epoch or train_examples // config.global_batch_size
        if steps_per_epoch <= 0:
            raise ValueError(
                f"Split {config.train_split!r} has {train_examples} examples, fewer than one "
                f"--global_batch_size={config.global_batch_size}; lower the batch size."
            )
    else:
        if chief:
            paths.ensure_writable(config.model_dir)
        if not config.steps_per_epoch:
            raise ValueError("Injected datasets need config.steps_per_epoch > 0.")
        steps_per_epoch = config.steps_per_epoch
        train_examples = validation_examples = None
    validation_steps = config.validation_steps or None

    kind = distribution.device_kind(strategy)
    policy = precision.set_policy(config.precision, kind)
    keras.utils.set_random_seed(config.seed)
    if chief:
        config_lib.save(config)
    logging.info("Configuration:\n%s", config.to_json())

    model_dir = config.model_dir
    backup_dir = paths.join(model_dir, BACKUP_DIR)
    checkpoint_dir = paths.join(model_dir, CHECKPOINT_DIR)
    history_csv = paths.join(model_dir, HISTORY_CSV)
    state = callbacks_lib.read_state(backup_dir)
    resumed = state is not None
    state = state or callbacks_lib.TrainingState()
    phases = plan_phases(config)

    print(
        _summary(
            "Training",
            [
                ("devices", ", ".join(strategy.extended.worker_devices)),
                (
                    "strategy",
                    f"{distribution.display_name(strategy)} ({replicas} replicas, "
                    f"{'chief' if chief else 'worker'})",
                ),
                ("global batch", config.global_batch_size),
                ("per-replica batch", config.global_batch_size // replicas),
                ("precision", policy),
                (
                    "backbone",
                    f"{config.backbone} (weights={config.weights}, {config.image_size}px)",
                ),
                (
                    "phases",
                    ", ".join(
                        f"{p.name} epochs {p.start + 1}-{p.end} lr={p.learning_rate:g}"
                        for p in phases
                    ),
                ),
                ("steps per epoch", steps_per_epoch),
                ("examples", f"train={train_examples} validation={validation_examples}"),
                (
                    "resume",
                    f"phase {state.phase} epoch {state.epoch} step {state.step}"
                    if resumed
                    else "fresh start",
                ),
                ("model_dir", model_dir),
            ],
        ),
        flush=True,
    )

    with strategy.scope():
        model = model_lib.build_model(
            config.backbone,
            image_size=config.image_size,
            weights=config.weights,
            dropout=config.dropout,
        )
    fit_model = _fit_model(model, strategy, config)

    def train_input(first_epoch: int, last_epoch: int, first_step: int):
        if datasets is not None:
            return datasets["train"]
        return strategy.distribute_datasets_from_function(
            lambda context: data.build_dataset(
                config.train_split,
                config,
                context,
                training=True,
                epochs=range(first_epoch, last_epoch),
                steps_per_epoch=steps_per_epoch,
                first_step=first_step,
                builder=builder,
            )
        )

    validation = (
        datasets["validation"]
        if datasets is not None
        else (
            strategy.distribute_datasets_from_function(
                lambda context: data.build_dataset(
                    config.validation_split, config, context, training=False, builder=builder
                )
            )
        )
    )

    for index, phase in enumerate(phases):
        if index < state.phase:
            continue
        model_lib.set_phase(model, phase.name, fine_tune_from=config.fine_tune_from)
        with strategy.scope():
            compile_model(fit_model, config, phase, steps_per_epoch)
            if resumed and index == state.phase:
                callbacks_lib.restore(fit_model, backup_dir)
                logging.info(
                    "Restored %s (phase %s, epoch %d, step %d).",
                    backup_dir,
                    phase.name,
                    state.epoch,
                    state.step,
                )
        if state.epoch < phase.start or state.phase != index:
            state.epoch, state.step = max(state.epoch, phase.start), 0
        state.phase = index
        if state.epoch >= phase.end:
            continue
        stopped = False
        # A resumed partial epoch runs as its own short `fit`, then the rest.
        spans = []
        if state.step:
            spans.append((state.epoch, state.epoch + 1, state.step))
            if state.epoch + 1 < phase.end:
                spans.append((state.epoch + 1, phase.end, 0))
        else:
            spans.append((state.epoch, phase.end, 0))
        for first_epoch, last_epoch, first_step in spans:
            early = (
                keras.callbacks.EarlyStopping(
                    monitor=MONITOR, mode="max", patience=config.early_stopping_patience
                )
                if config.early_stopping_patience
                else None
            )
            fit_callbacks = [
                callbacks_lib.StopOnNaN(backup_dir),
                callbacks_lib.BestCheckpoint(checkpoint_dir, state, monitor=MONITOR, chief=chief),
                callbacks_lib.HistoryCSV(history_csv, phase_name=phase.name, chief=chief),
                callbacks_lib.Backup(
                    backup_dir,
                    state,
                    steps_per_epoch=steps_per_epoch,
                    every_steps=config.backup_every_steps,
                    chief=chief,
                ),
            ]
            if early:
                fit_callbacks.append(early)
            if chief:
                fit_callbacks.append(
                    keras.callbacks.TensorBoard(
                        paths.join(model_dir, LOG_DIR), write_graph=False, update_freq="epoch"
                    )
                )
            if config.verbose:
                fit_callbacks.append(callbacks_lib.TotalEpochsProgbar(config.epochs))
            fit_model.fit(
                train_input(first_epoch, last_epoch, first_step),
                initial_epoch=first_epoch,
                epochs=last_epoch,
                steps_per_epoch=steps_per_epoch - first_step,
                validation_data=validation,
                validation_steps=validation_steps,
                callbacks=fit_callbacks,
                verbose=config.verbose,
            )
            if early is not None and early.stopped_epoch:
                logging.info(
                    "Early stopping ended phase %s after epoch %d.",
                    phase.name,
                    early.stopped_epoch + 1,
                )
                stopped = True
                break
        if stopped:
            state.epoch, state.step = phase.end, 0

    return _finish(
        config,
        model,
        strategy,
        chief=chief,
        state=state,
        builder=builder,
        datasets=datasets,
        validation_steps=validation_steps,
        steps_per_epoch=steps_per_epoch,
    )


def _finish(
    config, model, strategy, *, chief, state, builder, datasets, validation_steps, steps_per_epoch
) -> dict:
    """Best weights back in, EER threshold, export and model.keras (chief), summary."""
    model_dir = config.model_dir
    checkpoint_dir = paths.join(model_dir, CHECKPOINT_DIR)
    best = callbacks_lib.read_best(checkpoint_dir)
    best_path = paths.join(checkpoint_dir, callbacks_lib.BEST_MODEL_FILENAME)
    if best is not None and tf.io.gfile.exists(best_path):
        best_model = keras.models.load_model(best_path, compile=False, safe_mode=True)
        model.set_weights(best_model.get_weights())
        logging.info(
            "Loaded the best checkpoint (epoch %d, %s=%.4f).",
            best["epoch"] + 1,
            best["monitor"],
            best["value"],
        )

    result = {
        "model_dir": model_dir,
        "export_dir": paths.join(model_dir, export.EXPORT_SUBDIR),
        "keras_model": paths.join(model_dir, export.KERAS_MODEL_FILENAME),
        "best_checkpoint": best_path if best else None,
        "history_csv": paths.join(model_dir, HISTORY_CSV),
        "best_epoch": best["epoch"] + 1 if best else None,
        "best_metrics": best["metrics"] if best else {},
        "threshold": 0.5,
        "threshold_source": "default",
        "validation_eer": None,
        "epochs_completed": state.epoch,
        "steps_per_epoch": steps_per_epoch,
        "is_chief": chief,
    }
    if chief:
        if datasets is None:
            eval_dataset = data.build_dataset(
                config.validation_split, config, None, training=False, builder=builder
            )
            labels, scores = _validation_scores(model, eval_dataset, validation_steps)
            eer, threshold = metrics_lib.equal_error_rate(labels, scores)
            if math.isnan(threshold):
                logging.warning(
                    "Keeping threshold 0.5: the validation split lacks a class, "
                    "so it has no equal-error point."
                )
            else:
                result.update(
                    threshold=threshold, threshold_source="validation EER", validation_eer=eer
                )
        metadata = export.DetectorMetadata(
            image_size=config.image_size,
            threshold=result["threshold"],
            threshold_source=result["threshold_source"],
            backbone=config.backbone,
        )
        export.export_detector(model, result["export_dir"], metadata)
        callbacks_lib.inference_model(model).save(result["keras_model"])
    result["history"] = callbacks_lib.read_history(result["history_csv"])

    metrics = result["best_metrics"]
    shown = ", ".join(
        f"{k}={v:.4f}"
        for k, v in sorted(metrics.items())
        if k.startswith("val_") and math.isfinite(v)
    )
    print(
        _summary(
            "Done",
            [
                ("epochs", f"{state.epoch} of {config.epochs} ({steps_per_epoch} steps each)"),
                ("best epoch", f"{result['best_epoch']} by {MONITOR}"),
                ("its metrics", shown or "n/a"),
                (
                    "threshold",
                    f"{result['threshold']:.4f} ({result['threshold_source']}"
                    + (
                        f", EER {result['validation_eer']:.4f})"
                        if result["validation_eer"] is not None
                        else ")"
                    ),
                ),
                ("export", result["export_dir"] if chief else "written by the chief"),
                ("keras model", result["keras_model"] if chief else "written by the chief"),
                ("best checkpoint", result["best_checkpoint"]),
                ("history", result["history_csv"]),
                ("TensorBoard", f"tensorboard --logdir {paths.join(model_dir, LOG_DIR)}"),
            ],
        ),
        flush=True,
    )
    return result
