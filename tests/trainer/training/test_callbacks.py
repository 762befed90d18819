"""training.callbacks on a tiny Keras model: backups, NaN stops, history rows, best checkpoint."""

import io
import json

import keras
import numpy as np
import pytest

from trainer.training import callbacks


def _model():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(0.01), "mse")
    return model


def test_nan_loss_raises_and_keeps_the_last_good_backup(tmp_path):
    backup_dir = str(tmp_path / "backup")
    state = callbacks.TrainingState()
    model = _model()
    x = np.ones((8, 3), np.float32)
    y = np.zeros((8, 1), np.float32)
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[
            callbacks.StopOnNaN(backup_dir),
            callbacks.Backup(backup_dir, state, steps_per_epoch=2, every_steps=1),
        ],
    )
    good = callbacks.read_state(backup_dir)
    assert (good.epoch, good.step) == (1, 0)
    x_bad = x.copy()
    x_bad[4:] = np.inf  # The second batch of the next epoch turns the loss into inf/NaN.
    with pytest.raises(FloatingPointError, match="last good backup"):
        model.fit(
            x_bad,
            y,
            batch_size=4,
            initial_epoch=1,
            epochs=2,
            verbose=0,
            shuffle=False,
            callbacks=[
                callbacks.StopOnNaN(backup_dir),
                callbacks.Backup(backup_dir, state, steps_per_epoch=2, every_steps=1),
            ],
        )
    kept = callbacks.read_state(backup_dir)
    assert (kept.epoch, kept.step) == (1, 1)  # The step before the NaN, not deleted.
    restored = _model()
    callbacks.restore(restored, backup_dir)
    assert np.all(np.isfinite(restored.get_weights()[0]))


def test_nan_before_any_backup_does_not_claim_one(tmp_path):
    model = _model()
    x = np.full((4, 3), np.inf, np.float32)
    with pytest.raises(FloatingPointError) as error:
        model.fit(
            x,
            np.zeros((4, 1)),
            batch_size=4,
            verbose=0,
            callbacks=[callbacks.StopOnNaN(str(tmp_path / "backup"))],
        )
    assert "No backup was written before it" in str(error.value)
    assert "is kept" not in str(error.value)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_based_backups_and_workers_write_nothing_into_model_dir(tmp_path):
    clock = _Clock()
    model = _model()
    saves = []

    class Counting(callbacks.Backup):
        def save(self):
            saves.append((self.chief, self.state.step))
            super().save()

    for chief in (True, False):
        backup = Counting(
            str(tmp_path / f"backup_{chief}"),
            callbacks.TrainingState(),
            steps_per_epoch=10,
            every_seconds=60,
            chief=chief,
            clock=clock,
        )
        backup.set_model(model)
        backup.on_epoch_begin(0)
        for batch in range(9):
            clock.now += 25  # A step every 25 s: a backup every third step (>= 60 s).
            backup.on_train_batch_end(batch)
    assert saves == [(True, 3), (True, 6), (True, 9)]  # Time-based: the chief only.
    backup.on_epoch_end(0)  # Epoch ends: every worker saves, a worker into a throw-away folder.
    assert saves[-1] == (False, 0) and not (tmp_path / "backup_False").exists()


def test_progress_lines_are_plain_and_have_rate_and_eta():
    clock = _Clock()
    stream = io.StringIO()
    progress = callbacks.Progress(
        total_epochs=2,
        steps_per_epoch=10,
        global_batch_size=32,
        every_steps=4,
        every_seconds=0,
        stream=stream,
        clock=clock,
    )
    progress.on_epoch_begin(0)
    for batch in range(10):
        # The first step also traces and compiles: it does not count in the rate.
        clock.now += 300.0 if batch == 0 else 0.5
        progress.on_train_batch_end(batch, {"loss": 0.5})
    progress.on_epoch_end(0, {"loss": 0.5, "val_auc": 0.75, "images_per_second": 64.0})
    lines = stream.getvalue().splitlines()
    assert lines == [
        "epoch 1/2 step 4/10 loss 0.5000 64 img/s ETA 0m08s",
        "epoch 1/2 step 8/10 loss 0.5000 64 img/s ETA 0m06s",
        "epoch 1/2 done: loss 0.5000 val_auc 0.7500 (64 img/s)",
    ]


def test_backup_skips_the_redundant_save_at_the_last_step(tmp_path):
    saves = []

    class Counting(callbacks.Backup):
        def save(self):
            saves.append((self.state.epoch, self.state.step))
            super().save()

    model = _model()
    model.fit(
        np.ones((12, 3)),
        np.zeros((12, 1)),
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[
            Counting(str(tmp_path), callbacks.TrainingState(), steps_per_epoch=3, every_steps=1)
        ],
    )
    assert saves == [(0, 1), (0, 2), (1, 0)]


def test_history_csv_replaces_rows_of_redone_epochs(tmp_path):
    path = str(tmp_path / "history.csv")
    first = callbacks.HistoryCSV(path, phase_name="head")
    for epoch in range(3):
        first.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_auc": 0.5})
    resumed = callbacks.HistoryCSV(path, phase_name="fine_tune")  # Restarted in epoch 3.
    resumed.on_epoch_end(2, {"loss": 0.25, "val_auc": 0.75, "auc": 0.7})
    rows = callbacks.read_history(path)
    assert [(r["epoch"], r["phase"]) for r in rows] == [
        ("1", "head"),
        ("2", "head"),
        ("3", "fine_tune"),
    ]
    assert rows[2]["auc"] == "0.7" and rows[0]["auc"] == ""


def test_best_checkpoint_only_saves_improvements(tmp_path):
    state = callbacks.TrainingState()
    best = callbacks.BestCheckpoint(str(tmp_path), state)
    best.set_model(_model())
    best.on_epoch_end(0, {"val_auc": 0.6})
    best.on_epoch_end(1, {"val_auc": 0.55})
    record = callbacks.read_best(str(tmp_path))
    assert record["epoch"] == 0 and record["value"] == pytest.approx(0.6)
    best.on_epoch_end(2, {"val_auc": 0.8})
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 2
    assert (state.best_epoch, state.best_value) == (2, pytest.approx(0.8))
    loaded = keras.models.load_model(tmp_path / "best.keras", safe_mode=True)
    assert getattr(loaded, "optimizer", None) is None  # Inference copy: no optimizer slots.
