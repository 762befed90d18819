"""The defaults a user gets on GPUs, together, on the 2 logical CPUs of conftest.py.

On GPUs the trainer picks mixed_float16 (so `keras_workarounds.loss_scale`'s
replica-safe loss scaling) and steps_per_execution=8 under MirroredStrategy (so
`keras_workarounds.multi_step`'s loop), with the recipe's augmentation in the train
step (`augment`). Each piece has its own tests; here they run at once, through the
trainer's `train_lib.fit_model` and `train_lib.compile_model`, on a tiny CNN, with an
overflow planted on replica 1 in the middle of a call: the run must equal the same run
at one step per call (same weights, that step skipped, the loss scale halved once).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import loss_scale_cases
from trainer.training import config as config_lib
from trainer.training import train_lib
from trainer.training.keras_workarounds import loss_scale

STEPS, BATCH, SIZE = 4, 4, 16
# Step 2 (index 1, mid-call at 4 steps per call), last example: replica 1's half of the batch.
OVERFLOW_STEP, OVERFLOW_INDEX = 1, BATCH - 1
# A label this far outside [0, 1] makes the logit's gradient ~1e3 * 2**15 / BATCH: inf in
# float16 once it reaches the mixed_float16 layers below the float32 logit.
OVERFLOW_LABEL = 1000.0
CONFIG = config_lib.TrainConfig(
    data_dir="unused",
    model_dir="unused",
    global_batch_size=BATCH,
    optimizer="sgd",
    learning_rate=0.05,
    warmup_epochs=0.0,
    flip=True,
    color_jitter=0.1,
    blur_probability=0.5,
    seed=3,
)


@pytest.fixture
def mixed_float16():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (STEPS * BATCH, SIZE, SIZE, 3), dtype=np.uint8)
    y = (x.reshape(len(x), -1).mean(axis=1, keepdims=True) > 127).astype(np.float32)
    y[OVERFLOW_STEP * BATCH + OVERFLOW_INDEX] = OVERFLOW_LABEL
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _model() -> keras.Model:
    """Conv layers in mixed_float16 (the global policy), the logit in float32 as in model.py."""
    keras.utils.set_random_seed(0)
    images = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(1, dtype="float32", name="logit")(x))


def _fit(steps_per_execution: int) -> keras.Model:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _model()
        fit_model = train_lib.fit_model(model, strategy, CONFIG)
        train_lib.compile_model(
            fit_model,
            CONFIG,
            train_lib.Phase("full", 0, 1, CONFIG.learning_rate),
            STEPS,
            steps_per_execution=steps_per_execution,
        )
    fit_model.fit(_data(), steps_per_epoch=STEPS, epochs=1, verbose=0, shuffle=False)
    return fit_model


def test_defaults_with_an_overflow_on_replica_1_mid_call_equal_one_step_per_call(
    mixed_float16,
):
    single, multi = _fit(1), _fit(STEPS)
    for model in (single, multi):
        assert isinstance(model.optimizer, loss_scale.ReplicaSafeLossScaleOptimizer)
        assert type(model).__name__ == "MultiStepModel" and model.steps_per_execution == (
            1 if model is single else STEPS
        )
        state = loss_scale_cases.state(model)
        # One step skipped (the inner optimizer counts applied steps), scale halved once.
        assert int(model.optimizer.inner_optimizer.iterations.numpy()) == STEPS - 1, state
        assert state["scale"] == loss_scale_cases.INITIAL_SCALE / 2, state
        assert all(np.isfinite(w).all() for w in model.get_weights())
    for a, b in zip(single.get_weights(), multi.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
