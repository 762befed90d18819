"""The loss-scale repro's pieces, shared by test_loss_scale.py and loss_scale_worker.py.

A one-weight float16 Dense model (kernel 1, no bias, MSE against 0). An input of
0.01 gives a gradient that float16 holds at the initial loss scale 2**15; an input
of 1000 gives a scaled output gradient of about 2 * 1000 * 2**15 / 2 > 65504, which
is inf in float16: that example overflows.
"""

import keras
import numpy as np

SMALL = 0.01
OVERFLOWING = 1000.0
INITIAL_SCALE = 2.0**15


def one_weight_model(model_class: type[keras.Model] = keras.Model) -> keras.Model:
    """Built under the global dtype policy (mixed_float16 in these tests)."""
    inputs = keras.Input((1,))
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")(inputs)
    return model_class(inputs, outputs, name="one_weight")


def sgd() -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(learning_rate=0.1)


def examples(count: int, overflow: int | None) -> np.ndarray:
    """`count` inputs of shape (1,), all small except the one at index `overflow`."""
    x = np.full((count, 1), SMALL, np.float32)
    if overflow is not None:
        x[overflow] = OVERFLOWING
    return x


def state(model: keras.Model) -> dict:
    """The kernel and the loss-scale state after a step, as plain Python values."""
    optimizer = model.optimizer
    return {
        "kernel": float(model.get_weights()[0].ravel()[0]),
        "scale": float(optimizer.dynamic_scale.numpy()),
        "growth_counter": int(optimizer.step_counter.numpy()),
        "optimizer": type(optimizer).__name__,
    }
