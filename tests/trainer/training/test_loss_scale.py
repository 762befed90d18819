"""Loss scaling decides "skip or apply" for all replicas and workers together (issue 9, part 1).

The repro: a one-weight float16 Dense model, one example per replica, only one
replica's example overflowing float16 (tests/trainer/loss_scale_cases.py). Keras
3.15's own LossScaleOptimizer applies the inf gradient when the overflow is not on
replica 0; `keras_workarounds.loss_scale.ReplicaSafeLossScaleOptimizer` skips the step and
halves the scale wherever the overflow is.
"""

import inspect
import json
import pathlib
import subprocess

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import local_cluster, loss_scale_cases
from trainer.training import config as config_lib
from trainer.training import precision, train_lib
from trainer.training.keras_workarounds import loss_scale

REPO = pathlib.Path(__file__).resolve().parents[3]
UPSTREAM = keras.optimizers.LossScaleOptimizer


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_upstream_still_takes_finite_from_one_replica():
    """Fails when the Keras code that `ReplicaSafeLossScaleOptimizer` overrides or calls changes.

    Then re-check upstream's `LossScaleOptimizer._tf_apply`: if it now reduces the
    finiteness flag across replicas (run the replica-1 case below with Keras' own
    optimizer), delete keras_workarounds/loss_scale.py and let `precision.for_compile` return
    the optimizer for Keras to wrap; otherwise adapt the override to the new code.
    Checked against Keras 3.15.1.
    """
    where = f"keras {keras.__version__}, keras/src/optimizers/loss_scale_optimizer.py"
    expected = {
        "_tf_apply": ["self", "grads", "trainable_variables"],
        "_stateful_handle_finite_grads": ["self", "grads", "trainable_variables"],
        "_stateful_handle_non_finite_grads": ["self"],
        "check_finite": ["self", "grads"],
    }
    for name, parameters in expected.items():
        assert hasattr(UPSTREAM, name), f"{where}: LossScaleOptimizer.{name} is gone."
        found = list(inspect.signature(getattr(UPSTREAM, name)).parameters)
        assert found == parameters, f"{where}: LossScaleOptimizer.{name}{found} changed."
    assert "self._tf_apply(grads, trainable_variables)" in inspect.getsource(UPSTREAM.apply), (
        f"{where}: LossScaleOptimizer.apply no longer calls _tf_apply; the override is dead."
    )
    code = " ".join(inspect.getsource(UPSTREAM._tf_apply).replace("#", " ").split())
    assert "Arbitrarily take `finite` from the first replica" in code, (
        f"{where}: _tf_apply changed; does it reduce `finite` across replicas now?"
    )


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_policies_without_loss_scaling_keep_the_optimizer(policy):
    optimizer = loss_scale_cases.sgd()
    assert precision.for_compile(optimizer, policy) is optimizer


def test_mixed_float16_wraps_once_and_compile_keeps_it(mixed_float16):
    model = loss_scale_cases.one_weight_model()
    inner = loss_scale_cases.sgd()
    optimizer = precision.for_compile(inner, model.dtype_policy)
    assert isinstance(optimizer, loss_scale.ReplicaSafeLossScaleOptimizer)
    assert optimizer.inner_optimizer is inner
    assert precision.for_compile(optimizer, model.dtype_policy) is optimizer
    model.compile(optimizer=optimizer, loss="mse")
    assert model.optimizer is optimizer  # not wrapped a second time by Keras


def test_the_trainer_compiles_with_the_replica_safe_optimizer(mixed_float16, tmp_path):
    """The wiring: `train_lib.compile_model` goes through `precision.for_compile`."""
    model = loss_scale_cases.one_weight_model()
    config = config_lib.TrainConfig(data_dir=str(tmp_path), model_dir=str(tmp_path), epochs=1)
    train_lib.compile_model(model, config, train_lib.Phase("full", 0, 1, 1e-3), steps_per_epoch=2)
    assert isinstance(model.optimizer, loss_scale.ReplicaSafeLossScaleOptimizer)
    assert not isinstance(model.optimizer.inner_optimizer, UPSTREAM)


def test_an_unbuilt_keras_loss_scale_optimizer_becomes_replica_safe(mixed_float16):
    inner = loss_scale_cases.sgd()
    keras_own = UPSTREAM(inner, initial_scale=1024.0, dynamic_growth_steps=7, name="ls")
    optimizer = precision.for_compile(keras_own, "mixed_float16")
    assert isinstance(optimizer, loss_scale.ReplicaSafeLossScaleOptimizer)
    assert (optimizer.inner_optimizer, optimizer.initial_scale) == (inner, 1024.0)
    assert (optimizer.dynamic_growth_steps, optimizer.name) == (7, "ls")
    keras_own.build([keras.Variable(1.0)])
    with pytest.raises(ValueError, match="inner_optimizer"):
        precision.for_compile(keras_own, "mixed_float16")


def test_registers_under_dfd_and_loads_configs_naming_the_deepfake_detection_package():
    """Every trainer class registers as `dfd>...`; a config (a compiled model's
    optimizer in a .keras file) that names the package "deepfake_detection", with
    the module path of the flat `trainer/` package, still loads."""
    optimizer = loss_scale.ReplicaSafeLossScaleOptimizer(loss_scale_cases.sgd(), name="ls")
    config = keras.saving.serialize_keras_object(optimizer)
    assert config["registered_name"] == "dfd>ReplicaSafeLossScaleOptimizer"
    old = {
        **config,
        "module": "trainer.loss_scale",
        "registered_name": "deepfake_detection>ReplicaSafeLossScaleOptimizer",
    }
    loaded = keras.saving.deserialize_keras_object(old)
    assert type(loaded) is loss_scale.ReplicaSafeLossScaleOptimizer
    assert (loaded.name, loaded.initial_scale) == ("ls", optimizer.initial_scale)
    assert isinstance(loaded.inner_optimizer, keras.optimizers.SGD)


def test_a_backup_from_keras_own_wrapper_restores_into_the_replica_safe_one(
    mixed_float16, tmp_path
):
    """Runs backed up before this fix resume with their loss scale and optimizer state."""
    x = loss_scale_cases.examples(1, overflow=None)
    before = loss_scale_cases.one_weight_model()
    before.compile(optimizer=loss_scale_cases.sgd(), loss="mse")  # Keras wraps it itself
    before.train_on_batch(x, np.zeros_like(x))
    before.optimizer.dynamic_scale.assign(512.0)
    path = str(tmp_path / "backup.weights.h5")
    before.save_weights(path)

    after = loss_scale_cases.one_weight_model()
    after.compile(
        optimizer=precision.for_compile(loss_scale_cases.sgd(), after.dtype_policy), loss="mse"
    )
    after.optimizer.build(after.trainable_variables)
    after.load_weights(path)
    assert loss_scale_cases.state(after)["scale"] == 512.0
    assert int(after.optimizer.iterations.numpy()) == 1
    np.testing.assert_array_equal(after.get_weights()[0], before.get_weights()[0])


def _mirrored_model(strategy):
    """The one-weight model, compiled with what `precision.for_compile` makes of a Keras
    LossScaleOptimizer that grows the scale after 2 finite steps (Keras' default: 2000)."""
    with strategy.scope():
        model = loss_scale_cases.one_weight_model()
        optimizer = UPSTREAM(loss_scale_cases.sgd(), dynamic_growth_steps=2)
        model.compile(optimizer=precision.for_compile(optimizer, model.dtype_policy), loss="mse")
    return model


def _mirrored_batches(strategy, overflow_replica):
    """A global batch of 2 on the 2 logical CPUs of conftest.py: example i on replica i."""
    x = loss_scale_cases.examples(2, overflow=overflow_replica)
    batches = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(2)
    )
    per_replica = strategy.experimental_local_results(next(iter(batches))[0])
    assert [float(v.numpy()[0, 0]) for v in per_replica] == x.ravel().tolist()
    return batches


@pytest.mark.parametrize("overflow_replica", [0, 1])
def test_mirrored_overflow_on_any_replica_skips_the_step_and_halves_the_scale(
    mixed_float16, overflow_replica
):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = _mirrored_model(strategy)
    model.fit(
        _mirrored_batches(strategy, overflow_replica), steps_per_epoch=1, shuffle=False, verbose=0
    )
    state = loss_scale_cases.state(model)
    assert np.isfinite(state["kernel"]) and state["kernel"] == 1.0, state  # step skipped
    assert state["scale"] == loss_scale_cases.INITIAL_SCALE / 2, state
    assert state["growth_counter"] == 0, state
    assert state["optimizer"] == "ReplicaSafeLossScaleOptimizer", state


def test_mirrored_without_overflow_applies_steps_and_grows_the_scale_on_schedule(
    mixed_float16,
):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = _mirrored_model(strategy)
    initial = loss_scale_cases.INITIAL_SCALE
    kernel = 1.0
    # (scale, growth counter) after steps 1 and 2 of a 2-step growth interval.
    for expected in [(initial, 1), (initial * 2, 0)]:
        model.fit(_mirrored_batches(strategy, None), steps_per_epoch=1, shuffle=False, verbose=0)
        state = loss_scale_cases.state(model)
        assert np.isfinite(state["kernel"]) and state["kernel"] < kernel, state  # applied
        assert (state["scale"], state["growth_counter"]) == expected, state
        kernel = state["kernel"]


def _worker_rows(results) -> list[dict]:
    rows = []
    for returncode, stdout, stderr in results:
        assert returncode == 0, stderr[-4000:]
        rows += [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return rows


def test_two_workers_skip_together_when_only_worker_1_overflows():
    """MultiWorkerMirroredStrategy: 2 processes of 1 replica each (loss_scale_worker.py).

    Step 1: only worker 1's example overflows; step 2: none does. Without the fix each
    worker decides from its own gradients, so they take different branches and the
    collectives do not match: the run hangs (hence the timeout).
    """
    rows = _worker_rows(
        local_cluster.run_workers(
            ["-m", "tests.trainer.loss_scale_worker", "--overflow_worker=1"], timeout=180
        )
    )
    by_step = {step: [r for r in rows if r["step"] == step] for step in (1, 2)}
    assert [len(by_step[1]), len(by_step[2])] == [2, 2], rows
    initial = loss_scale_cases.INITIAL_SCALE
    for row in by_step[1]:  # skipped on both workers, scale halved on both
        assert (row["kernel"], row["scale"], row["growth_counter"]) == (1.0, initial / 2, 0), row
        assert row["optimizer"] == "ReplicaSafeLossScaleOptimizer", row
    _assert_applied_after_the_skip(by_step[2], rows)
    # The same two steps in one call of the trainer's multi-step loop (the GPU default
    # steps_per_execution > 1), overflow on worker 1 only in the call's first step: the
    # state after the call is the state after step 2 above, to the bit.
    multi = _worker_rows(
        local_cluster.run_workers(
            [
                "-m",
                "tests.trainer.loss_scale_worker",
                "--overflow_worker=1",
                "--steps_per_execution=2",
            ],
            timeout=180,
        )
    )
    assert [r["step"] for r in multi] == [2, 2], multi  # one call: one batch end per worker
    _assert_applied_after_the_skip(multi, multi)
    assert multi[0]["kernel"] == by_step[2][0]["kernel"], (multi, rows)


def _assert_applied_after_the_skip(step_2_rows, rows):
    initial = loss_scale_cases.INITIAL_SCALE
    for row in step_2_rows:  # applied on both, same weights, scale kept
        assert np.isfinite(row["kernel"]) and row["kernel"] < 1.0, row
        assert (row["scale"], row["growth_counter"]) == (initial / 2, 1), row
        assert row["optimizer"] == "ReplicaSafeLossScaleOptimizer", row
    assert step_2_rows[0]["kernel"] == step_2_rows[1]["kernel"], rows


# ------------------------------------------------- the upstream bug itself (the canary)


def test_upstream_optimizer_applies_another_replicas_overflow(mixed_float16):
    """Keras' own LossScaleOptimizer, overflow on replica 1 only: inf/NaN into the weights.

    The bug `keras_workarounds/loss_scale.py` exists for, shown on 2 logical CPUs. When
    this test fails, Keras skips the step itself: re-check, then remove the module (its
    docstring says how).
    """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = loss_scale_cases.one_weight_model()
        model.compile(optimizer=UPSTREAM(loss_scale_cases.sgd()), loss="mse")
    model.fit(_mirrored_batches(strategy, 1), steps_per_epoch=1, shuffle=False, verbose=0)
    state = loss_scale_cases.state(model)
    assert state["optimizer"] == "LossScaleOptimizer", state
    assert not np.isfinite(state["kernel"]), (
        f"Keras {keras.version()}'s own LossScaleOptimizer no longer applies replica 1's "
        f"overflow ({state}): upstream may be fixed; see keras_workarounds/loss_scale.py."
    )
    assert state["scale"] == loss_scale_cases.INITIAL_SCALE, state  # and the scale kept


@pytest.mark.slow
def test_upstream_optimizer_across_workers_breaks_when_one_worker_overflows():
    """Keras' own optimizer on 2 workers (loss_scale_worker.py --plain), overflow on worker 1:
    the workers disagree (a hang, ended by the timeout) or inf/NaN reaches the weights.

    Slow: a hang costs the whole timeout. The fast canary is the test above (one process).
    """
    try:
        results = local_cluster.run_workers(
            ["-m", "tests.trainer.loss_scale_worker", "--overflow_worker=1", "--plain"],
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return  # The hang: collectives that never match.
    rows = [
        json.loads(line)
        for _, stdout, _ in results
        for line in stdout.splitlines()
        if line.startswith("{")
    ]
    broken = any(code != 0 for code, _, _ in results) or any(
        not np.isfinite(r["kernel"]) or r["scale"] == loss_scale_cases.INITIAL_SCALE
        for r in rows
        if r["step"] == 1
    )
    assert broken, (
        "Keras' own LossScaleOptimizer handled an overflow on worker 1 only: upstream may be "
        f"fixed; re-check keras_workarounds/loss_scale.py. Rows: {rows}"
    )
