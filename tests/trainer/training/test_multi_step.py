"""Several train steps per call under MirroredStrategy (keras_workarounds.multi_step, keras #19246).

On the 2 logical CPU devices conftest.py makes: Keras 3.15's own multi-step
train function fails there, the work-around runs whole executions and trains
exactly as one step per call does.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from trainer.training import augment
from trainer.training import config as config_lib
from trainer.training.keras_workarounds import multi_step

STEPS, BATCH = 8, 4


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (STEPS * BATCH, 8, 8, 3)).astype(np.uint8)
    y = (x.reshape(len(x), -1).mean(axis=1, keepdims=True) > 127).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


def _model():
    images = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(2, 3, kernel_initializer="ones")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(1, kernel_initializer="ones")(x))


class _BatchEnds(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append(batch)


def _fit(steps_per_execution, model_class):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = config_lib.TrainConfig(data_dir="d", model_dir="m", flip=False)
    with strategy.scope():
        model = _model()
        fit_model = augment.training_model(model, config, model_class=model_class)
        fit_model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
            steps_per_execution=steps_per_execution,
        )
    ends = _BatchEnds()
    fit_model.fit(_data(), steps_per_epoch=STEPS, epochs=1, verbose=0, callbacks=[ends])
    return fit_model, ends.batches


def test_upstream_multi_step_still_fails_under_mirrored():
    """Keras' own steps_per_execution > 1 under MirroredStrategy. When this test fails,
    Keras works there: remove keras_workarounds/multi_step.py (its removal condition)."""
    with pytest.raises(tf.errors.InvalidArgumentError, match="placeholder"):
        _fit(4, augment.AugmentedModel)


def test_whole_executions_train_exactly_like_one_step_per_call():
    single, single_ends = _fit(1, multi_step.MultiStepModel)
    multi, multi_ends = _fit(4, multi_step.MultiStepModel)
    assert single_ends == list(range(STEPS))
    assert multi_ends == [3, 7]  # Keras reports the last step of each call.
    assert int(multi.optimizer.iterations.numpy()) == STEPS
    for a, b in zip(single.get_weights(), multi.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_refuses_a_keras_it_was_not_checked_on():
    multi_step.check_keras("3.15.1")
    with pytest.raises(RuntimeError, match="trainer/training/keras_workarounds/multi_step.py"):
        multi_step.check_keras("3.16.0")
