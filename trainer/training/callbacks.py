"""Callbacks that make a long run safe to kill, resume and inspect.

Why not only Keras' own:
- `keras.callbacks.BackupAndRestore` restores the epoch but not the position
  inside it, so a mid-epoch kill replays the epoch. `Backup` records the step
  too (and the phase of the fine-tuning recipe), and `trainer.training.train_lib` skips the
  input that was already consumed.
- `TerminateOnNaN()` stops "gracefully", after which a backup callback would
  treat the run as finished. `StopOnNaN` raises instead, so the last good
  backup survives and the error says what to do.
- `CSVLogger` appends to a local file; `HistoryCSV` rewrites the whole file
  each epoch, which also works on gs://, and survives resumes without
  duplicate rows.

Files are written by the chief only; other workers of a multi-worker run write
the same calls to a throw-away local temporary folder and delete it (as TF's
multi-worker guide prescribes), so every worker executes the same operations
and none writes into `model_dir`.

Keras calls batch callbacks once per `steps_per_execution` steps (with the
index of the last step run); everything here counts steps from that index,
so backups and progress stay exact with steps_per_execution > 1.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
import uuid

from absl import logging
import keras
import numpy as np
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


def _sync(path: str) -> None:
    """Makes a written local file durable (fsync) before it is renamed into place.

    Without it a backup "written" is only in the page cache: a machine that loses
    power right after could keep the renamed name over an empty or partial file. On
    `gs://` (and other remote file systems tf.io.gfile writes) an object exists only once
    its upload completed, when the file is closed, so there is nothing to sync.
    """
    if "://" in path:
        return
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_atomic(path: str, data: bytes | str) -> None:
    """Writes via a temporary file, fsync and a rename, so a kill never leaves half a file."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    mode = "wb" if isinstance(data, bytes) else "w"
    with tf.io.gfile.GFile(tmp, mode) as f:
        f.write(data)
    _sync(tmp)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _worker_dir(directory: str, chief: bool) -> str:
    """`directory` for the chief; a throw-away local folder for every other worker."""
    return directory if chief else tempfile.mkdtemp(prefix="dfd-worker-")


def _cleanup(directory: str, chief: bool, target: str) -> None:
    if not chief:
        shutil.rmtree(target, ignore_errors=True)


class Backup(keras.callbacks.Callback):
    """Backs up weights + optimizer state and the exact position: each epoch, and every N steps/s.

    Args:
        backup_dir: `<model_dir>/backup`.
        state: the position at which this `fit` starts (updated as it runs).
        steps_per_epoch: full epoch length, in steps.
        every_steps: also back up inside an epoch whenever the step count crosses a
            multiple of this (0: off).
        every_seconds: also back up inside an epoch when this many seconds passed since
            the last backup (0: off). Bounds the cost of backups on fast hardware,
            where a step count would trigger them every few seconds. Chief only:
            the other workers' copies are thrown away anyway, and their clocks
            need not agree.
        chief: whether this process writes the real files.
        clock: seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        backup_dir: str,
        state: TrainingState,
        *,
        steps_per_epoch: int,
        every_steps: int = 0,
        every_seconds: float = 0.0,
        chief: bool = True,
        clock=time.monotonic,
    ):
        super().__init__()
        self.backup_dir = backup_dir
        self.state = state
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.chief = chief
        self.clock = clock
        self._first_step_offset = state.step
        self._last_save_step = state.step
        self._last_save_time = clock()
        self.seconds_writing = 0.0
        self.saves = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.state.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self._first_step_offset + batch + 1
        self.state.step = step
        # The last step of an epoch is saved by on_epoch_end, after validation.
        if step >= self.steps_per_epoch:
            return
        by_steps = self.every_steps and (
            step // self.every_steps > self._last_save_step // self.every_steps
        )
        by_time = (
            self.every_seconds
            and self.chief
            and self.clock() - self._last_save_time >= self.every_seconds
        )
        if by_steps or by_time:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self._first_step_offset = 0
        self.state.epoch, self.state.step = epoch + 1, 0
        self.save()

    def save(self) -> None:
        started = self.clock()
        directory = _worker_dir(self.backup_dir, self.chief)
        tf.io.gfile.makedirs(directory)
        weights = paths.join(directory, WEIGHTS_FILENAME)
        # Keras needs a `.weights.h5` suffix: write beside, then rename into place.
        tmp = paths.join(directory, f"tmp-{uuid.uuid4().hex}.weights.h5")
        self.model.save_weights(tmp)
        _sync(tmp)
        tf.io.gfile.rename(tmp, weights, overwrite=True)
        _write_atomic(
            paths.join(directory, STATE_FILENAME), json.dumps(dataclasses.asdict(self.state))
        )
        _cleanup(self.backup_dir, self.chief, directory)
        self._last_save_step = self.state.step
        self._last_save_time = self.clock()
        self.seconds_writing += self._last_save_time - started
        self.saves += 1
        logging.info(
            "Backup at phase %d epoch %d step %d -> %s (%.1f s)",
            self.state.phase,
            self.state.epoch,
            self.state.step,
            self.backup_dir if self.chief else "a throw-away folder (not the chief)",
            self._last_save_time - started,
        )


def write_state(backup_dir: str, state: TrainingState, *, chief: bool = True) -> None:
    """Records a new position beside unchanged backed-up weights (e.g. a phase early-stopped)."""
    directory = _worker_dir(backup_dir, chief)
    _write_atomic(paths.join(directory, STATE_FILENAME), json.dumps(dataclasses.asdict(state)))
    _cleanup(backup_dir, chief, directory)


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
    """Saves `<dir>/best.keras` and `best.json` whenever `monitor` improves (higher is better).

    Args:
        directory: `<model_dir>/checkpoints`.
        state: the run's position; holds the best value so far across `fit` calls.
        monitor: the logged metric to maximise.
        chief: whether this process writes the real files.
        model: the inference model to save (default: the model `fit` runs). Pass it
            when `fit` runs a training-only wrapper (multi-worker twin, on-device
            augmentation): the checkpoint must hold the inference model only.
    """

    def __init__(
        self,
        directory: str,
        state: TrainingState,
        *,
        monitor: str = "val_auc",
        chief: bool = True,
        model: keras.Model | None = None,
    ):
        super().__init__()
        self.directory = directory
        self.state = state
        self.monitor = monitor
        self.chief = chief
        self.inference = model

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
        inference_model(self.inference or self.model).save(tmp)
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
        # A scalar, or one value per worker/replica if a strategy hands them over unreduced.
        if loss is not None and not np.all(np.isfinite(np.asarray(loss, dtype=np.float64))):
            state = read_state(self.backup_dir)
            if state is None:
                kept = (
                    f"No backup was written before it ({self.backup_dir} has none), so "
                    "rerunning starts from scratch."
                )
            else:
                kept = (
                    f"The last good backup (phase {state.phase}, epoch {state.epoch}, step "
                    f"{state.step}) in {self.backup_dir} is kept; rerunning resumes from it."
                )
            raise FloatingPointError(
                f"Training loss became {float(loss)} at batch {batch}. {kept} Fix: lower "
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


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Throughput(keras.callbacks.Callback):
    """Measures training images/s per epoch and adds it to the epoch logs.

    Timed from the end of an epoch's first execution to the end of its last
    one: validation, and the tracing/compilation of the first call, are left
    out (an epoch of one execution is timed whole). Put it first in the
    callback list: Keras hands every callback the same logs dict, so
    `images_per_second` then reaches history.csv and TensorBoard.
    """

    def __init__(self, global_batch_size: int, *, first_step: int = 0, clock=time.monotonic):
        super().__init__()
        self.global_batch_size = global_batch_size
        self.clock = clock
        self._offset = first_step
        self.images = 0
        self.seconds = 0.0
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._begin = self.clock()
        self._first_end = self._last = None
        self._first_steps = self._last_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        now = self.clock()
        if self._first_end is None:
            self._first_end, self._first_steps = now, batch + 1
        self._last, self._last_steps = now, batch + 1

    def on_epoch_end(self, epoch, logs=None):
        if self._last is None:
            return
        self.steps += self._last_steps
        if self._last_steps > self._first_steps:
            steps, seconds = self._last_steps - self._first_steps, self._last - self._first_end
        else:
            steps, seconds = self._last_steps, self._last - self._begin
        seconds = max(seconds, 1e-9)
        self.images += steps * self.global_batch_size
        self.seconds += seconds
        if logs is not None:
            logs["images_per_second"] = steps * self.global_batch_size / seconds
        self._offset = 0

    @property
    def images_per_second(self) -> float | None:
        return self.images / self.seconds if self.seconds else None


class Progress(keras.callbacks.Callback):
    """Plain progress lines for logs: step, loss, images/s and ETA; no ANSI codes, no bars.

    One line every `every_steps` steps or `every_seconds` seconds (whichever
    comes first; 0 disables a trigger), and one line per epoch with the
    validation metrics. With `steps_per_execution` > 1 lines come at most once
    per execution, since Keras only returns to Python then.

    Args:
        total_epochs: epochs of the whole run (all phases).
        steps_per_epoch: full epoch length, in steps.
        global_batch_size: images per step.
        first_step: steps of the first epoch already done before this `fit`.
        every_steps, every_seconds: when to print a line inside an epoch.
        epoch_lines_only: print only the per-epoch lines.
    """

    def __init__(
        self,
        *,
        total_epochs: int,
        steps_per_epoch: int,
        global_batch_size: int,
        first_step: int = 0,
        every_steps: int = 0,
        every_seconds: float = 30.0,
        epoch_lines_only: bool = False,
        stream=None,
        clock=time.monotonic,
    ):
        super().__init__()
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.global_batch_size = global_batch_size
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.epoch_lines_only = epoch_lines_only
        self.stream = stream
        self.clock = clock
        self._offset = first_step
        self._epoch = 0
        self._mark_time = self._mark_step = None
        self._first_batch = True
        self._last_line_step = 0
        self._rate = None

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._mark_time, self._mark_step = self.clock(), self._offset
        self._last_line_step = self._offset
        self._last_line_time = self._mark_time
        self._first_batch = True

    def on_train_batch_end(self, batch, logs=None):
        step = self._offset + batch + 1
        now = self.clock()
        if self._first_batch:
            # The rate counts from the end of the epoch's first execution: the first one
            # also traces and compiles the step, which made the first ETA read hours.
            self._first_batch = False
            self._mark_time, self._mark_step = now, step
        elif now > self._mark_time and step > self._mark_step:
            self._rate = (step - self._mark_step) / (now - self._mark_time)
        if self.epoch_lines_only or step >= self.steps_per_epoch:
            return
        due_steps = self.every_steps and (
            step // self.every_steps > self._last_line_step // self.every_steps
        )
        due_time = self.every_seconds and now - self._last_line_time >= self.every_seconds
        if not (due_steps or due_time):
            return
        self._last_line_step, self._last_line_time = step, now
        loss = (logs or {}).get("loss")
        self._print(
            f"epoch {self._epoch + 1}/{self.total_epochs} step {step}/{self.steps_per_epoch}"
            + (f" loss {float(loss):.4f}" if loss is not None else "")
            + self._speed(step)
        )

    def _speed(self, step: int) -> str:
        if not self._rate:
            return ""
        # Steps left in the run (early stopping may end it sooner).
        left = (self.total_epochs - self._epoch - 1) * self.steps_per_epoch
        left += self.steps_per_epoch - step
        return (
            f" {self._rate * self.global_batch_size:,.0f} img/s ETA {_duration(left / self._rate)}"
        )

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        shown = " ".join(
            f"{k} {float(v):.4f}"
            for k, v in logs.items()
            if k in ("loss", "auc") or (k.startswith("val_") and k != "val_examples")
        )
        rate = logs.get("images_per_second")
        self._print(
            f"epoch {epoch + 1}/{self.total_epochs} done: {shown}"
            + (f" ({float(rate):,.0f} img/s)" if rate else "")
        )
        self._offset = 0
