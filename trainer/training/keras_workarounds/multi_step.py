"""Several train steps per call under the mirrored strategies: a pinned Keras 3.15 work-around.

Why: with `steps_per_execution` > 1, Keras 3.15's TensorFlow trainer
(`keras/src/backend/tensorflow/trainer.py`, `_make_function`,
`multi_step_on_iterator`) runs the steps in a `tf.while_loop` whose body wraps
each step in a `tf.cond` (so that a call can stop early when the input ends).
Under MirroredStrategy and MultiWorkerMirroredStrategy the optimizer's update
goes through `merge_call` (on every device kind unless XLA compiles the step on
GPUs only), and `merge_call` inside that `tf.cond` fails: "You must feed a value
for placeholder tensor 'while/body/.../cond/Placeholder'" (keras #19246, open;
reproduced on 2 logical CPUs). Without a fix, a multi-GPU run returns to Python
after every step, which is exactly the per-step host work the option removes.

The fix: the trainer only ever asks for whole executions (`trainer.training.train_lib` lowers
`steps_per_execution` to a divisor of every span it trains: the epoch, and the
rest of a resumed epoch), so a call can run a fixed number of steps in a plain
`tf.range` loop, TensorFlow's documented pattern for several steps inside one
`tf.function` under a strategy, with no `tf.cond` around the step. Evaluation
keeps Keras' own multi-step function: it has no `merge_call` and works.

Removal condition: delete this module and use `augment.AugmentedModel` in
`trainer.training.train_lib.fit_model` when `test_upstream_multi_step_still_fails_under_mirrored`
in tests/trainer/training/test_multi_step.py fails, i.e. Keras' own multi-step train
function works under MirroredStrategy. `check_keras()` refuses other Keras
versions, so an upgrade cannot silently run this override of the private
`reduce_per_replica` helper.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer.training import augment
from trainer.training.keras_workarounds import pins as keras_pins

# Keras versions (major.minor) this work-around was checked against: the project's one list.
KERAS_VERSIONS_CHECKED = keras_pins.KERAS_VERSIONS_CHECKED


def check_keras(version: str = keras.__version__) -> None:
    """Raises RuntimeError unless `version` is one this work-around was checked against."""
    keras_pins.require_checked(
        "trainer/training/keras_workarounds/multi_step.py",
        KERAS_VERSIONS_CHECKED,
        "run tests/trainer/training/test_multi_step.py; if Keras' own steps_per_execution works "
        "under "
        "MirroredStrategy, remove the module (see its removal condition), else re-check it "
        "and add the version.",
        version,
    )


def needs_fixed_loop(strategy: tf.distribute.Strategy) -> bool:
    """Whether Keras' own multi-step train function fails under `strategy` (merge_call)."""
    return isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
    )


class MultiStepModel(augment.AugmentedModel):
    """The fit model: augments in its train step, and runs whole executions of steps.

    Same layers and weights as the model it is built from (see
    `augment.training_model`); only `make_train_function` differs from Keras', and
    only with `steps_per_execution` > 1 under a mirrored strategy.
    """

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        strategy = self.distribute_strategy
        if self.steps_per_execution == 1 or not needs_fixed_loop(strategy):
            return super().make_train_function(force=force)
        check_keras()
        from keras.src.backend.tensorflow.trainer import reduce_per_replica

        steps = int(self.steps_per_execution)

        def one_step_on_data(data):
            outputs = strategy.run(self.train_step, args=(data,))
            return reduce_per_replica(outputs, strategy, reduction="auto")

        def fixed_steps(iterator):
            outputs = one_step_on_data(next(iterator))
            for _ in tf.range(steps - 1):
                outputs = one_step_on_data(next(iterator))
            return outputs

        if not self.run_eagerly:
            one_step_on_data = tf.function(
                one_step_on_data, reduce_retracing=True, jit_compile=self.jit_compile
            )
            fixed_steps = tf.function(fixed_steps, reduce_retracing=True)

        def function(iterator):
            if isinstance(iterator, (tf.data.Iterator, tf.distribute.DistributedIterator)):
                return fixed_steps(iterator)
            # `train_on_batch` passes a plain generator: one step per element, as Keras does.
            outputs = None
            for _, data in zip(range(steps), iterator):
                outputs = one_step_on_data(data)
            return outputs

        self.train_function = function
        return function
