"""Callbacks that make a long run safe to kill, resume and inspect.

Why not only Keras' own:
- `keras.callbacks.BackupAndRestore` restores the epoch but not the position
  inside it, so a mid-epoch kill replays the epoch. `Backup` records the step
  too (and the phase of the fine-tuning recipe), and `trainer.train` skips the
  input that was already consumed.
- `TerminateOnNaN()` stops "gracefully", after which a backup callback would
  treat the run as finished. `StopOnNaN` raises instead, so the last good
  backup survives and the error says what to do.
- `CSVLogger` appends to a local file; `HistoryCSV` rewrites the whole file
  each epoch, which also works on gs://, and survives resumes without
  duplicate rows.

Files are written by the chief only; other workers of a multi-worker run write
the same calls to a private temporary folder and delete it, so every worker
executes the same operations.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import uuid

from absl import logging
import keras
import tensorflow as tf

from preprocessing import paths

STATE_FILENAME = "state.json"
WEIGHTS_FILENAME = "latest.weights.h5"
BEST_MODEL_FILENAME = "best.keras"
BEST_STATE_FILENAME = "best.json"


@dataclasses.dataclass
class TrainingState:
    """Where training stands: `epoch` epochs done, plus `step` steps into the next one."""

    phase: int = 0
    epoch: int = 0
    step: int = 0
    best_value: float = -math.inf
    best_epoch: int = -1


def _write_atomic(path: str, data: bytes | str) -> None:
    """Writes via a temporary file and a rename, so a kill never leaves half a file."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    mode = "wb" if isinstance(data, bytes) else "w"
    with tf.io.gfile.GFile(tmp, mode) as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _worker_dir(directory: str, chief: bool) -> str:
    return directory if chief else paths.join(directory, f".worker-tmp-{uuid.uuid4().hex}")


def _cleanup(directory: str, chief: bool, target: str) -> None:
    if not chief and tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)


class Backup(keras.callbacks.Callback):
    """Backs up weights + optimizer state and the exact position, every N steps and each epoch.

    Args:
        backup_dir: `<model_dir>/backup`.
        state: the position at which this `fit` starts (updated as it runs).
        steps_per_epoch: full epoch length, in steps.
        every_steps: also back up every this many steps inside an epoch (0: epoch ends only).
        chief: whether this process writes the real files.
    """

    def __init__(
        self,
        backup_dir: str,
        state: TrainingState,
        *,
        steps_per_epoch: int,
        every_steps: int = 0,
        chief: bool = True,
    ):
        super().__init__()
        self.backup_dir = backup_dir
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.chief = chief
        self._first_step_offset = state.step

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.state.step = self._first_step_offset + batch + 1
        # The last step of an epoch is saved by on_epoch_end, after validation.
        if (
            self.every_steps
            and self.state.step % self.every_steps == 0
            and self.state.step < self.steps_per_epoch
        ):
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self._first_step_offset = 0
        self.state.epoch, self.state.step = epoch + 1, 0
        self.save()

    def save(self) -> None:
        directory = _worker_dir(self.backup_dir, self.chief)
        tf.io.gfile.makedirs(directory)
        weights = paths.join(directory, WEIGHTS_FILENAME)
        # Keras needs a `.weights.h5` suffix: write beside, then rename into place.
        tmp = paths.join(directory, f"tmp-{uuid.uuid4().hex}.weights.h5")
        self.model.save_weights(tmp)
        tf.io.gfile.rename(tmp, weights, overwrite=True)
        _write_atomic(
            paths.join(directory, STATE_FILENAME), json.dumps(dataclasses.asdict(self.state))
        )
        logging.info(
            "Backup at phase %d epoch %d step %d -> %s",
            self.state.phase,
            self.state.epoch,
            self.state.step,
            directory,
        )
        _cleanup(self.backup_dir, self.chief, directory)


def read_state(backup_dir: str) -> TrainingState | None:
    """The last backed-up position, or None for a fresh run."""
    path = paths.join(backup_dir, STATE_FILENAME)
    if not (
        tf.io.gfile.exists(path) and tf.io.gfile.exists(paths.join(backup_dir, WEIGHTS_FILENAME))
    ):
        return None
    with tf.io.gfile.GFile(path) as f:
        return TrainingState(**json.load(f))


def restore(model: keras.Model, backup_dir: str) -> None:
    """Loads weights and optimizer state written by `Backup` into a compiled model."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(paths.join(backup_dir, WEIGHTS_FILENAME))


class BestCheckpoint(keras.callbacks.Callback):
    """Saves `<dir>/best.keras` and `best.json` whenever `monitor` improves (higher is better)."""

    def __init__(
        self, directory: str, state: TrainingState, *, monitor: str = "val_auc", chief: bool = True
    ):
        super().__init__()
        self.directory = directory
        self.state = state
        self.monitor = monitor
        self.chief = chief

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            logging.warning(
                "BestCheckpoint: %s not in logs %s; nothing saved.",
                self.monitor,
                sorted(logs or {}),
            )
            return
        value = float(value)
        if not value > self.state.best_value:
            return
        self.state.best_value, self.state.best_epoch = value, epoch
        directory = _worker_dir(self.directory, self.chief)
        tf.io.gfile.makedirs(directory)
        tmp = paths.join(directory, f"tmp-{uuid.uuid4().hex}.keras")
        inference_model(self.model).save(tmp)
        tf.io.gfile.rename(tmp, paths.join(directory, BEST_MODEL_FILENAME), overwrite=True)
        record = {
            "epoch": epoch,
            "monitor": self.monitor,
            "value": value,
            "metrics": {k: float(v) for k, v in (logs or {}).items()},
        }
        _write_atomic(paths.join(directory, BEST_STATE_FILENAME), json.dumps(record, indent=2))
        logging.info(
            "Epoch %d: %s improved to %.4f; saved %s",
            epoch + 1,
            self.monitor,
            value,
            self.directory,
        )
        _cleanup(self.directory, self.chief, directory)


def inference_model(model: keras.Model) -> keras.Model:
    """The same layers and weights without the optimizer: what `.keras` files for use hold.

    A training model's `.keras` file would carry the optimizer's slots too (3x
    the size for Adam); resuming uses `backup/`, not these files.
    """
    return keras.Model(model.input, model.output, name=model.name)


def read_best(directory: str) -> dict | None:
    """`best.json` written by `BestCheckpoint`, or None."""
    path = paths.join(directory, BEST_STATE_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class HistoryCSV(keras.callbacks.Callback):
    """One row per epoch in `history.csv`; rows of epochs redone after a resume are replaced."""

    def __init__(self, path: str, *, phase_name: str, chief: bool = True):
        super().__init__()
        self.path = path
        self.phase_name = phase_name
        self.chief = chief
        self.rows = read_history(path)

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, "phase": self.phase_name}
        row.update({k: float(v) for k, v in sorted((logs or {}).items())})
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch + 1] + [row]
        if not self.chief:
            return
        fields = []
        for r in self.rows:
            fields += [k for k in r if k not in fields]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        _write_atomic(self.path, buffer.getvalue())


def read_history(path: str) -> list[dict]:
    """Rows of a `history.csv` (all values as strings), or [] if there is none."""
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path) as f:
        return list(csv.DictReader(io.StringIO(f.read())))


class StopOnNaN(keras.callbacks.Callback):
    """Raises as soon as the loss is not finite, leaving the last good backup in place."""

    def __init__(self, backup_dir: str):
        super().__init__()
        self.backup_dir = backup_dir

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"Training loss became {float(loss)} at batch {batch}. The last good backup in "
                f"{self.backup_dir} is kept; rerunning resumes from it. Fix: lower "
                "--learning_rate, raise --warmup_epochs, or try --precision=float32."
            )


class TotalEpochsProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, showing 'Epoch e/total' even when `fit` covers a part of the run."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def set_params(self, params):
        super().set_params(params)
        self.epochs = self.total_epochs
