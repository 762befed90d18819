"""The training run: `run(config, *, strategy=None, datasets=None) -> dict`.

`trainer.task` (the command line) builds a `TrainConfig`, calls `run` and
prints its summaries; tests and the demo call `run` directly and may inject a
strategy or datasets. `run` is three steps, each a function of its own:

1. `setup`: validate the config, create the strategy, check the replica count,
   the dataset, model_dir and (for `--weights=imagenet`) the weights file:
   cheap failures before anything heavy. Then set the precision policy, build
   the model under the strategy scope (Keras reads the policy when layers are
   created) and read `<model_dir>/backup/state.json`: a killed run resumes in
   its phase, epoch and step, and the run says whether it starts fresh,
   resumes, continues with changed settings or only re-exports.
2. `train_phase`, once per phase of the recipe (head, then fine-tune; or one
   `full` phase from scratch), each with its own optimizer and schedule.
3. `finish`: reload the best checkpoint (by validation AUC), refuse to export a
   run whose validation AUC is at chance (`trainer.training.divergence`), pick the
   validation EER threshold, and (chief only) write `export/` and `model.keras`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import math
import sys
import warnings

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from preprocessing import paths
from trainer import data, export
from trainer import metrics as metrics_lib
from trainer import model as model_lib
from trainer.training import augment, distribution, input_pipeline, precision
from trainer.training import callbacks as callbacks_lib
from trainer.training import config as config_lib
from trainer.training import optimizer as optimizer_lib
from trainer.training.divergence import TrainingDiverged, check_not_diverged  # noqa: F401
from trainer.training.keras_workarounds import multi_step, multiworker

BACKUP_DIR = "backup"
CHECKPOINT_DIR = "checkpoints"
LOG_DIR = "logs"
HISTORY_CSV = "history.csv"
MONITOR = "val_auc"
# The thresholds `trainer.training.train_lib` itself writes to detector.json; any other
# source (dfd-evaluate's) is kept on a re-export that trained nothing new.
_OWN_THRESHOLD_SOURCES = ("default", "validation EER")


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


@keras.saving.register_keras_serializable(package=model_lib.KERAS_PACKAGE)
class ExampleCount(keras.metrics.Metric):
    """How many examples a metric pass saw: the sum of sample weights (padding weighs 0).

    Logged as `examples` / `val_examples`, so a run shows that validation saw
    every example of its split exactly once, whatever the replica count.
    """

    def __init__(self, name: str = "examples", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del y_pred
        if sample_weight is None:
            n = keras.ops.cast(keras.ops.shape(y_true)[0], self.dtype)
        else:
            n = keras.ops.sum(keras.ops.cast(sample_weight, self.dtype))
        self.count.assign_add(n)

    def result(self):
        # A copy: Keras reads training results after validation reused the metric.
        return keras.ops.add(self.count, 0.0)


def compile_model(
    model: keras.Model,
    config: config_lib.TrainConfig,
    phase: Phase,
    steps_per_epoch: int,
    *,
    steps_per_execution: int = 1,
    jit_compile: bool = False,
) -> None:
    """Compiles for `phase`: logit loss in float32, the "fake"-class metrics.

    Validation batches carry sample weights (0 for padding): the metrics below
    count only real examples. `val_loss` is Keras' mean over every slot of the
    padded batches (a padded slot adds 0), so it reads low on a split much
    smaller than the global batch; the metrics are exact.
    """
    phase_epochs = phase.end - phase.start
    optimizer = optimizer_lib.make_optimizer(
        config, phase.learning_rate, phase_epochs * steps_per_epoch, phase_epochs
    )
    model.compile(
        optimizer=precision.for_compile(optimizer, model.dtype_policy),
        loss=keras.losses.BinaryCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        weighted_metrics=[
            # The model outputs logits: threshold 0 is p_fake = 0.5.
            keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),
            keras.metrics.AUC(from_logits=True, name="auc"),
            keras.metrics.Precision(thresholds=0.0, name="precision"),
            keras.metrics.Recall(thresholds=0.0, name="recall"),
            ExampleCount(name="examples"),
        ],
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )


def fit_model(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    config: config_lib.TrainConfig,
    element_spec=None,
) -> keras.Model:
    """The model `fit` runs; the one place that builds it.

    `model`'s twin that augments each batch in its train step on the
    accelerator (`trainer.training.augment.training_model`) and runs several steps per
    call under the mirrored strategies (`trainer.training.keras_workarounds.multi_step`), with the
    multi-worker work-arounds under MultiWorkerMirroredStrategy
    (`trainer.training.keras_workarounds.multiworker`). Same layers and weights as `model`.
    Backups restore into it, while the best checkpoint, `model.keras` and the
    export always save `model`, the inference model, which holds no augmentation.

    Args:
        model: the inference model from `trainer.model.build_model`.
        strategy: the strategy `fit` runs under.
        config: the run's configuration (augmentation flags and seed).
        element_spec: `element_spec` of one input pipeline's training batches
            (needed under MultiWorkerMirroredStrategy only).
    """
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return multiworker.twin(model, strategy, element_spec, config)
    with strategy.scope():
        return augment.training_model(model, config, model_class=multi_step.MultiStepModel)


@dataclasses.dataclass
class RunSetup:
    """Everything `setup` decided; read by `train_phase`, `finish` and the command line."""

    config: config_lib.TrainConfig
    strategy: tf.distribute.Strategy
    chief: bool
    policy: str
    jit_compile: bool
    steps_per_execution: int
    builder: object
    datasets: dict | None
    train_examples: int | None
    validation_examples: int | None
    steps_per_epoch: int
    validation_steps: int | None
    phases: list[Phase]
    state: callbacks_lib.TrainingState
    resumed: bool
    finished_before: bool
    status: str
    changed_settings: list[str]
    model: keras.Model
    fit_model: keras.Model
    validation: object
    backup_dir: str
    checkpoint_dir: str
    history_csv: str
    extra_callbacks: Sequence[keras.callbacks.Callback] = ()
    # checkpoints/best.json as the run found it: the export's weights did not change
    # when training ends with the same best checkpoint.
    best_before: dict | None = None
    steps_trained: int = 0
    images: int = 0
    train_seconds: float = 0.0
    backup_seconds: float = 0.0
    backups: int = 0
    early_stopped: list[str] = dataclasses.field(default_factory=list)

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.train_seconds if self.train_seconds else None


def _input_pipelines(strategy: tf.distribute.Strategy) -> int:
    """Input pipelines `distribute_datasets_from_function` makes: one per worker."""
    return max(1, strategy.num_replicas_in_sync // max(1, len(strategy.extended.worker_devices)))


def _status(
    config: config_lib.TrainConfig,
    phases: list[Phase],
    state: callbacks_lib.TrainingState | None,
    saved_config: dict | None,
    changes: list[str],
) -> tuple[str, bool]:
    """(one line saying how this run relates to what model_dir holds, finished-before?)."""
    changed = f"; changed settings since the last run: {', '.join(changes)}" if changes else ""
    if state is None:
        if saved_config is not None:
            return (
                "fresh start (model_dir has the config.json of an earlier run that left no "
                f"backup){changed}",
                False,
            )
        return "fresh start", False
    finished = state.phase >= len(phases) or (
        state.phase == len(phases) - 1 and state.epoch >= phases[-1].end
    )
    if finished:
        return f"finished earlier: nothing left to train, only re-exporting{changed}", True
    name = phases[min(state.phase, len(phases) - 1)].name
    where = f"phase {state.phase} ({name}) epoch {state.epoch} step {state.step}"
    if changes:
        return f"continuing at {where} with changed settings: {', '.join(changes)}", False
    return f"resuming at {where}", False


@dataclasses.dataclass(frozen=True)
class _InputSizes:
    """The dataset's sizes as `setup` reads them (from the config for injected datasets)."""

    builder: object
    train_examples: int | None
    validation_examples: int | None
    steps_per_epoch: int
    validation_steps: int | None


@dataclasses.dataclass(frozen=True)
class _ResumeState:
    """How this run relates to what model_dir holds (`_read_resume_state`)."""

    state: callbacks_lib.TrainingState | None
    phases: list[Phase]
    status: str
    finished_before: bool
    changed_settings: list[str]


def setup(
    config: config_lib.TrainConfig,
    *,
    strategy: tf.distribute.Strategy | None = None,
    datasets: dict | None = None,
) -> RunSetup:
    """Checks, strategy, model and resume state: everything before the first step.

    The cheap checks run first, so a bad flag, dataset or model_dir fails before
    anything heavy; the precision policy is set before the model is built,
    because Keras reads it when the layers are created.
    """
    config_lib.validate(config)
    # Validation reads its split to the end by design; Keras warns about that
    # every time. The training stream is sized exactly, so it never runs out.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    strategy = strategy or distribution.get_strategy(
        config.strategy, cpu_replicas=config.cpu_replicas, tpu=config.tpu
    )
    _check_replicas(config, strategy)
    chief = distribution.is_chief(strategy)
    sizes = _input_sizes(config, strategy, datasets, chief=chief)
    if config.weights.lower() == "imagenet":
        model_lib.ensure_imagenet_weights(config.backbone)
    policy = precision.set_policy(config.precision, distribution.device_kind(strategy))
    keras.utils.set_random_seed(config.seed)
    resume = _read_resume_state(config, chief=chief)
    model = _build_model(config, strategy)
    element_spec = _train_element_spec(config, datasets, sizes, strategy)
    validation = _validation_input(config, strategy, datasets, sizes)
    checkpoint_dir = paths.join(config.model_dir, CHECKPOINT_DIR)
    return RunSetup(
        config=config,
        strategy=strategy,
        chief=chief,
        policy=policy,
        jit_compile=distribution.resolve_jit_compile(config.jit_compile, strategy),
        steps_per_execution=distribution.resolve_steps_per_execution(
            config.steps_per_execution, strategy
        ),
        builder=sizes.builder,
        datasets=datasets,
        train_examples=sizes.train_examples,
        validation_examples=sizes.validation_examples,
        steps_per_epoch=sizes.steps_per_epoch,
        validation_steps=sizes.validation_steps,
        phases=resume.phases,
        state=resume.state or callbacks_lib.TrainingState(),
        resumed=resume.state is not None,
        finished_before=resume.finished_before,
        status=resume.status,
        changed_settings=resume.changed_settings,
        model=model,
        fit_model=fit_model(model, strategy, config, element_spec),
        validation=validation,
        backup_dir=paths.join(config.model_dir, BACKUP_DIR),
        checkpoint_dir=checkpoint_dir,
        history_csv=paths.join(config.model_dir, HISTORY_CSV),
        best_before=callbacks_lib.read_best(checkpoint_dir),
    )


def _check_replicas(config: config_lib.TrainConfig, strategy: tf.distribute.Strategy) -> None:
    """ValueError unless the global batch splits evenly; a warning for XLA on several replicas."""
    replicas = strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
        lower = config.global_batch_size // replicas * replicas or replicas
        raise ValueError(
            f"--global_batch_size={config.global_batch_size} is not divisible by the {replicas} "
            f"replicas of {type(strategy).__name__}; use a multiple of {replicas}, e.g. {lower}."
        )
    if config.jit_compile and distribution.xla_known_to_fail(strategy):
        logging.warning(
            "--jit_compile with %d replicas: XLA under Keras 3 + tf.distribute has open breakages "
            "(keras #17187, tensorflow #56423; on split CPUs it fails with 'Trying to access "
            "resource ... replica_1'). If the first step fails, drop --jit_compile.",
            replicas,
        )


def _input_sizes(
    config: config_lib.TrainConfig,
    strategy: tf.distribute.Strategy,
    datasets: dict | None,
    *,
    chief: bool,
) -> _InputSizes:
    """Opens the dataset (checking data_dir and model_dir first) and sizes the epochs.

    Injected datasets have no split to count: their steps come from the config.

    Raises:
        ValueError: the training split holds fewer examples than one global batch,
            or injected datasets come without `config.steps_per_epoch`.
    """
    if datasets is not None:
        if chief:
            paths.ensure_writable(config.model_dir)
        if not config.steps_per_epoch:
            raise ValueError("Injected datasets need config.steps_per_epoch > 0.")
        return _InputSizes(
            None, None, None, config.steps_per_epoch, config.validation_steps or None
        )
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
    validation_steps = input_pipeline.eval_steps(
        builder, config.validation_split, config, _input_pipelines(strategy)
    )
    if config.validation_steps:
        validation_steps = min(validation_steps, config.validation_steps)
    return _InputSizes(
        builder, train_examples, validation_examples, steps_per_epoch, validation_steps
    )


def _read_resume_state(config: config_lib.TrainConfig, *, chief: bool) -> _ResumeState:
    """Where a killed run stopped and what changed since; then the chief saves config.json.

    The earlier run's config.json is read (for the changed settings) before this
    run's replaces it.
    """
    saved_config = config_lib.load_saved(config.model_dir)
    changes = config_lib.changed_settings(saved_config, config)
    state = callbacks_lib.read_state(paths.join(config.model_dir, BACKUP_DIR))
    phases = plan_phases(config)
    status, finished_before = _status(config, phases, state, saved_config, changes)
    if chief:
        config_lib.save(config)
    logging.debug("Configuration:\n%s", config.to_json())
    return _ResumeState(state, phases, status, finished_before, changes)


def _build_model(config: config_lib.TrainConfig, strategy: tf.distribute.Strategy) -> keras.Model:
    """The inference model, its variables created under the strategy's scope."""
    with strategy.scope():
        return model_lib.build_model(
            config.backbone,
            image_size=config.image_size,
            weights=config.weights,
            dropout=config.dropout,
        )


def _validation_input(
    config: config_lib.TrainConfig,
    strategy: tf.distribute.Strategy,
    datasets: dict | None,
    sizes: _InputSizes,
):
    """What `fit` validates on: the injected dataset, or one padded pipeline per worker."""
    if datasets is not None:
        return datasets["validation"]
    return strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.build_dataset(
            config.validation_split,
            config,
            context,
            training=False,
            builder=sizes.builder,
            eval_steps=sizes.validation_steps,
        )
    )


def _train_element_spec(
    config: config_lib.TrainConfig,
    datasets: dict | None,
    sizes: _InputSizes,
    strategy: tf.distribute.Strategy,
):
    """`element_spec` of one training pipeline's batches (what each replica receives).

    Only MultiWorkerMirroredStrategy's twin needs it (`fit_model`); None elsewhere.
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    if datasets is not None:
        return datasets["train"].element_spec
    pipelines = _input_pipelines(strategy)
    context = tf.distribute.InputContext(
        num_input_pipelines=pipelines,
        input_pipeline_id=0,
        num_replicas_in_sync=strategy.num_replicas_in_sync,
    )
    return input_pipeline.build_dataset(
        config.train_split,
        config,
        context,
        training=True,
        epochs=range(1),
        steps_per_epoch=sizes.steps_per_epoch,
        builder=sizes.builder,
    ).element_spec


def _largest_divisor_at_most(limit: int, *numbers: int) -> int:
    """The largest d <= limit dividing every non-zero number (1 at worst)."""
    for d in range(max(1, limit), 0, -1):
        if all(n % d == 0 for n in numbers if n):
            return d
    return 1


def _train_input(run_setup: RunSetup, first_epoch: int, last_epoch: int, first_step: int):
    if run_setup.datasets is not None:
        return run_setup.datasets["train"]
    config = run_setup.config
    return run_setup.strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.build_dataset(
            config.train_split,
            config,
            context,
            training=True,
            epochs=range(first_epoch, last_epoch),
            steps_per_epoch=run_setup.steps_per_epoch,
            first_step=first_step,
            builder=run_setup.builder,
        )
    )


def _reraise_data_loss(run_setup: RunSetup, error: tf.errors.DataLossError):
    if run_setup.builder is None:
        raise error
    config = run_setup.config
    raise data.corrupted_data_error(
        run_setup.builder, [config.train_split, config.validation_split], error
    ) from None


def _callbacks(run_setup: RunSetup, phase: Phase, first_step: int) -> tuple[list, object]:
    config, state, chief = run_setup.config, run_setup.state, run_setup.chief
    throughput = callbacks_lib.Throughput(config.global_batch_size, first_step=first_step)
    backup = callbacks_lib.Backup(
        run_setup.backup_dir,
        state,
        steps_per_epoch=run_setup.steps_per_epoch,
        every_steps=config.backup_every_steps,
        every_seconds=config.backup_every_seconds,
        chief=chief,
    )
    fit_callbacks = [
        throughput,  # First: it adds images_per_second to the logs the others see.
        callbacks_lib.StopOnNaN(run_setup.backup_dir),
        callbacks_lib.BestCheckpoint(
            run_setup.checkpoint_dir, state, monitor=MONITOR, chief=chief, model=run_setup.model
        ),
        callbacks_lib.HistoryCSV(run_setup.history_csv, phase_name=phase.name, chief=chief),
        backup,
    ]
    if config.early_stopping_patience:
        fit_callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=MONITOR, mode="max", patience=config.early_stopping_patience
            )
        )
    if chief:
        fit_callbacks.append(
            keras.callbacks.TensorBoard(
                paths.join(config.model_dir, LOG_DIR), write_graph=False, update_freq="epoch"
            )
        )
    if config.verbose == 1 and _stdout_is_terminal():
        fit_callbacks.append(callbacks_lib.TotalEpochsProgbar(config.epochs))
    elif config.verbose:
        fit_callbacks.append(
            callbacks_lib.Progress(
                total_epochs=config.epochs,
                steps_per_epoch=run_setup.steps_per_epoch,
                global_batch_size=config.global_batch_size,
                first_step=first_step,
                every_steps=config.log_every_steps,
                every_seconds=config.log_every_seconds,
                epoch_lines_only=config.verbose >= 2,
            )
        )
    fit_callbacks.extend(run_setup.extra_callbacks)
    return fit_callbacks, (throughput, backup)


def _stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def train_phase(run_setup: RunSetup, index: int) -> None:
    """Trains phase `index` from where `run_setup.state` stands (nothing if it is done)."""
    state, phase = run_setup.state, run_setup.phases[index]
    _compile_phase(run_setup, index)
    if state.epoch < phase.start or state.phase != index:
        state.epoch, state.step = max(state.epoch, phase.start), 0
    state.phase = index
    for first_epoch, last_epoch, first_step in _spans(state, phase):
        if _fit_span(run_setup, phase, first_epoch, last_epoch, first_step):
            return


def _compile_phase(run_setup: RunSetup, index: int) -> None:
    """Sets phase `index`'s trainable layers and compiles it; a run resumed in it restores here.

    The backup holds the optimizer's state, so it is restored after `compile`
    has created this phase's optimizer.
    """
    config, state = run_setup.config, run_setup.state
    phase = run_setup.phases[index]
    model_lib.set_phase(run_setup.model, phase.name, fine_tune_from=config.fine_tune_from)
    resuming_here = run_setup.resumed and index == state.phase
    first_step = state.step if resuming_here and state.epoch >= phase.start else 0
    steps_per_execution = _largest_divisor_at_most(
        run_setup.steps_per_execution, run_setup.steps_per_epoch, first_step
    )
    if steps_per_execution != run_setup.steps_per_execution:
        logging.info(
            "steps_per_execution %d in phase %s: the largest value <= %d that divides the "
            "epoch's %d steps (and the %d already done), so each epoch ends on a call boundary.",
            steps_per_execution,
            phase.name,
            run_setup.steps_per_execution,
            run_setup.steps_per_epoch,
            first_step,
        )
    with run_setup.strategy.scope():
        compile_model(
            run_setup.fit_model,
            config,
            phase,
            run_setup.steps_per_epoch,
            steps_per_execution=steps_per_execution,
            jit_compile=run_setup.jit_compile,
        )
        if resuming_here:
            callbacks_lib.restore(run_setup.fit_model, run_setup.backup_dir)
            logging.info(
                "Restored %s (phase %s, epoch %d, step %d).",
                run_setup.backup_dir,
                phase.name,
                state.epoch,
                state.step,
            )


def _spans(state: callbacks_lib.TrainingState, phase: Phase) -> list[tuple[int, int, int]]:
    """(first epoch, end epoch, first step) of each `fit` left in `phase`; none when it is done.

    A resumed partial epoch runs as its own short `fit`, then the rest.
    """
    if state.epoch >= phase.end:
        return []
    if not state.step:
        return [(state.epoch, phase.end, 0)]
    spans = [(state.epoch, state.epoch + 1, state.step)]
    if state.epoch + 1 < phase.end:
        spans.append((state.epoch + 1, phase.end, 0))
    return spans


def _fit_span(
    run_setup: RunSetup, phase: Phase, first_epoch: int, last_epoch: int, first_step: int
) -> bool:
    """One `fit` over epochs [first_epoch, last_epoch); True when early stopping ended the phase.

    Throughput and backup figures are added to `run_setup` even when `fit` fails.
    """
    config, state = run_setup.config, run_setup.state
    fit_callbacks, (throughput, backup) = _callbacks(run_setup, phase, first_step)
    early = next((c for c in fit_callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
    try:
        run_setup.fit_model.fit(
            _train_input(run_setup, first_epoch, last_epoch, first_step),
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=run_setup.steps_per_epoch - first_step,
            validation_data=run_setup.validation,
            # The padded validation pipeline ends after exactly its steps. Keras
            # keeps one iterator across epochs when given a step count, so the
            # second epoch would find it empty: give none.
            validation_steps=None if run_setup.datasets is None else run_setup.validation_steps,
            callbacks=fit_callbacks,
            verbose=1 if config.verbose == 1 and _stdout_is_terminal() else 0,
            shuffle=False,
        )
    except tf.errors.DataLossError as error:
        _reraise_data_loss(run_setup, error)
    finally:
        run_setup.images += throughput.images
        run_setup.train_seconds += throughput.seconds
        run_setup.steps_trained += throughput.steps
        run_setup.backup_seconds += backup.seconds_writing
        run_setup.backups += backup.saves
    if early is None or not early.stopped_epoch:
        return False
    message = f"early stopping ended phase {phase.name} after epoch {early.stopped_epoch + 1}"
    logging.info("%s.", message.capitalize())
    run_setup.early_stopped.append(message)
    # The phase is over: say so on disk too, or a rerun would train its last epochs.
    state.epoch, state.step = phase.end, 0
    callbacks_lib.write_state(run_setup.backup_dir, state, chief=run_setup.chief)
    return True


def _validation_scores(model: keras.Model, dataset: tf.data.Dataset, steps: int | None):
    """(labels, p_fake) over the validation split, computed by this process alone."""
    predict = tf.function(
        lambda images: tf.sigmoid(tf.cast(model(images, training=False), tf.float32))
    )
    labels, scores = [], []
    for index, (images, batch_labels, weights) in enumerate(dataset):
        if steps and index >= steps:
            break
        keep = weights.numpy().ravel() > 0
        scores.append(predict(images).numpy().ravel()[keep])
        labels.append(batch_labels.numpy().ravel()[keep])
    return np.concatenate(labels), np.concatenate(scores)


def _threshold(
    run_setup: RunSetup, labels, scores, export_dir: str, best: dict | None
) -> tuple[float, str, float]:
    """(threshold, source, validation EER or nan) for detector.json, saying what it decided.

    A threshold chosen by `dfd-evaluate --write_threshold` (or by hand) is kept
    while the exported weights stay the same: nothing trained, or training went
    on without beating the best checkpoint (`best`, read after training, equals
    the run's `best_before`).
    """
    config = run_setup.config
    previous = None
    if tf.io.gfile.exists(paths.join(export_dir, export.METADATA_FILENAME)):
        previous = export.read_metadata(export_dir)
    if (
        previous is not None
        and previous.threshold_source not in _OWN_THRESHOLD_SOURCES
        and not config.reset_threshold
    ):
        same_best = best is not None and best == run_setup.best_before
        if run_setup.steps_trained == 0 or same_best:
            why = (
                "this run trained nothing new"
                if run_setup.steps_trained == 0
                else f"the best checkpoint is still epoch {best['epoch'] + 1}, so the exported "
                "weights are unchanged"
            )
            logging.info(
                "Keeping threshold %.4f (%s) from %s: %s. "
                "--reset_threshold picks the validation EER again.",
                previous.threshold,
                previous.threshold_source,
                export_dir,
                why,
            )
            return previous.threshold, previous.threshold_source, math.nan
        logging.warning(
            "Replacing threshold %.4f (%s) in %s: the model changed since it was chosen. "
            "Run dfd-evaluate --write_threshold again to choose it on the new model.",
            previous.threshold,
            previous.threshold_source,
            export_dir,
        )
    if labels is None:
        return 0.5, "default", math.nan
    return eer_threshold(labels, scores, config.validation_split)


def eer_threshold(labels, scores, split: str) -> tuple[float, str, float]:
    """(threshold, source, EER) at the validation split's equal-error point.

    A split without both classes has no such point: one warning line says so,
    and the threshold stays 0.5 ("default").
    """
    eer, threshold = metrics_lib.equal_error_rate(labels, scores)
    if math.isnan(threshold):
        real, fake = int(np.sum(labels == 0)), int(np.sum(labels == 1))
        logging.warning(
            "Validation split %r has %d real and %d fake examples: too small for an EER "
            "threshold (it needs both classes); keeping 0.5.",
            split,
            real,
            fake,
        )
        return 0.5, "default", math.nan
    return threshold, "validation EER", eer


def finish(run_setup: RunSetup) -> dict:
    """Best weights back in, the at-chance check, EER threshold, export and model.keras (chief)."""
    best, best_path = _load_best_checkpoint(run_setup)
    result = _result(run_setup, best, best_path)
    if run_setup.chief:
        labels, scores = _score_exported_weights(run_setup, result)
        threshold, source, eer = _threshold(run_setup, labels, scores, result["export_dir"], best)
        result.update(
            threshold=threshold,
            threshold_source=source,
            validation_eer=None if math.isnan(eer) else eer,
        )
        _export(run_setup, result)
    result["history"] = callbacks_lib.read_history(result["history_csv"])
    return result


def _load_best_checkpoint(run_setup: RunSetup) -> tuple[dict | None, str]:
    """(checkpoints/best.json or None, best.keras' path); its weights go into the model."""
    best = callbacks_lib.read_best(run_setup.checkpoint_dir)
    best_path = paths.join(run_setup.checkpoint_dir, callbacks_lib.BEST_MODEL_FILENAME)
    if best is not None and tf.io.gfile.exists(best_path):
        best_model = keras.models.load_model(best_path, compile=False, safe_mode=True)
        run_setup.model.set_weights(best_model.get_weights())
        logging.info(
            "Loaded the best checkpoint (epoch %d, %s=%.4f).",
            best["epoch"] + 1,
            best["monitor"],
            best["value"],
        )
    return best, best_path


def _result(run_setup: RunSetup, best: dict | None, best_path: str) -> dict:
    """`run`'s result before the chief's threshold and export (see `run` for the keys)."""
    config, model_dir = run_setup.config, run_setup.config.model_dir
    return {
        "model_dir": model_dir,
        "export_dir": paths.join(model_dir, export.EXPORT_SUBDIR),
        "keras_model": paths.join(model_dir, export.KERAS_MODEL_FILENAME),
        "best_checkpoint": best_path if best else None,
        "history_csv": run_setup.history_csv,
        "log_dir": paths.join(model_dir, LOG_DIR),
        "best_epoch": best["epoch"] + 1 if best else None,
        "best_metrics": best["metrics"] if best else {},
        "monitor": MONITOR,
        "threshold": 0.5,
        "threshold_source": "default",
        "validation_eer": None,
        "validation_auc": None,
        "epochs": config.epochs,
        "epochs_completed": run_setup.state.epoch,
        "steps_per_epoch": run_setup.steps_per_epoch,
        "steps_trained": run_setup.steps_trained,
        "images_per_second": run_setup.images_per_second,
        "backups": run_setup.backups,
        "backup_seconds": run_setup.backup_seconds,
        "early_stopped": list(run_setup.early_stopped),
        "status": run_setup.status,
        "is_chief": run_setup.chief,
    }


def _score_exported_weights(run_setup: RunSetup, result: dict):
    """(labels, p_fake) of the validation split under the weights about to be exported.

    Records their exact AUC in `result["validation_auc"]` and raises
    `TrainingDiverged` when it is at chance. (None, None) with injected datasets,
    which have no TFDS split to read again.
    """
    if run_setup.datasets is not None:
        return None, None
    config = run_setup.config
    eval_dataset = input_pipeline.build_dataset(
        config.validation_split, config, None, training=False, builder=run_setup.builder
    )
    try:
        labels, scores = _validation_scores(
            run_setup.model, eval_dataset, config.validation_steps or None
        )
    except tf.errors.DataLossError as error:
        _reraise_data_loss(run_setup, error)
    # The exported weights' exact AUC, not the epoch's `val_auc`: Keras bins scores into
    # 200 thresholds, so a model whose scores all sit in one bin (common early, and
    # with a tiny split) reads 0.5 there while ranking the classes well.
    auc = metrics_lib.roc_auc(labels, scores) if np.all(np.isfinite(scores)) else math.nan
    result["validation_auc"] = None if math.isnan(auc) else auc
    check_not_diverged(auc, labels, config.validation_split)
    return labels, scores


def _export(run_setup: RunSetup, result: dict) -> None:
    """Writes export/ (SavedModel + detector.json) and model.keras: the inference model only."""
    config, model = run_setup.config, run_setup.model
    metadata = export.DetectorMetadata(
        image_size=config.image_size,
        threshold=result["threshold"],
        threshold_source=result["threshold_source"],
        backbone=config.backbone,
        dataset=config.dataset,
        exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        validation_auc=result.get("validation_auc"),
        validation_eer=result.get("validation_eer"),
    )
    export.export_detector(model, result["export_dir"], metadata)
    callbacks_lib.inference_model(model).save(result["keras_model"])


def run(
    config: config_lib.TrainConfig,
    *,
    strategy: tf.distribute.Strategy | None = None,
    datasets: dict | None = None,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
    on_setup: Callable[[RunSetup], None] | None = None,
) -> dict:
    """Trains, checkpoints, exports: `setup`, `train_phase` per phase, `finish`.

    Args:
        config: the run's configuration.
        strategy: use this strategy instead of `config.strategy` (tests).
        datasets: {"train": ..., "validation": ...} datasets (tf.data or distributed)
            to use instead of the TFDS dataset; needs `config.steps_per_epoch`.
            Validation batches are (images, labels, sample_weights). Mid-epoch
            resume does not skip input of injected datasets.
        extra_callbacks: appended to every `fit`'s callbacks, after the backup (tests).
        on_setup: called with the `RunSetup` before the first step (the command
            line prints its summary there).

    Returns:
        dict with the artifact paths (`model_dir`, `export_dir`, `keras_model`,
        `best_checkpoint`, `history_csv`, `log_dir`), `best_epoch` (1-based),
        `best_metrics`, `threshold`, `threshold_source`, `validation_eer`,
        `validation_auc` (exact, of the exported weights),
        `epochs_completed`, `steps_per_epoch`, `steps_trained` (in this process),
        `images_per_second` (measured training throughput, None if nothing
        trained), `backups`/`backup_seconds`, `early_stopped`, `status`,
        `history` (rows of history.csv) and `is_chief`.

    Raises:
        ValueError, FileNotFoundError, PermissionError: bad configuration, with the fix.
        TrainingDiverged: the best validation AUC is at chance (see `check_not_diverged`).
        data.CorruptedDataError: a shard of the dataset cannot be read (named).
    """
    run_setup = setup(config, strategy=strategy, datasets=datasets)
    run_setup.extra_callbacks = tuple(extra_callbacks)
    if on_setup is not None:
        on_setup(run_setup)
    for index in range(len(run_setup.phases)):
        if index >= run_setup.state.phase:
            train_phase(run_setup, index)
    return finish(run_setup)
