"""Keras 3.15 `fit` under a real multi-process MultiWorkerMirroredStrategy: a pinned work-around.

Two Keras bugs stop `fit` when the workers are separate processes (they do
not show with several replicas inside one process):

1. Before the first step, `fit`/`evaluate` average one input batch across
   replicas to learn the input shapes (`_maybe_symbolic_build`, a private
   method of Keras' TensorFlow trainer). Across workers that is a collective
   all-reduce of the (images, labels, ...) tuple, refused for nested values and
   for uint8. The shapes are known from the dataset's `element_spec`, so the
   twin builds itself from a zero batch of that spec instead.
2. Each step's logs (scalars) are averaged across workers with
   `strategy.reduce("MEAN", v, axis=0)`, which fails on 0-d values
   (tensorflow#72388). Returning them as 1-element vectors makes that reduce
   valid; its result is a scalar again, so callbacks see the usual logs.
   Keras takes that path only in multi-worker mode (its own
   `_collective_all_reduce_multi_worker` test); a MultiWorkerMirroredStrategy
   with one worker (no TF_CONFIG, or a cluster of one) takes the plain path,
   where a 1-element vector would reach the callbacks as it is, so the twin
   asks Keras' test and reshapes only when Keras will reduce.
3. With `steps_per_execution` > 1, Keras' own multi-step *test* function fails
   across worker processes (its end-of-input check inside a `tf.cond`), so
   validation runs one-step calls in a loop (`MultiWorkerTwin.make_test_function`);
   the train function is `multi_step`'s fixed loop, as on one machine.

The twin shares every layer (and so every weight) with the model that is
checkpointed and exported; it exists only to call `fit` on.

Removal condition: delete this module and its call in `trainer.training.train_lib.fit_model`
when tests/trainer/training/test_multiworker.py passes with `fit_model` returning the
plain model on the Keras pinned in setup.py (i.e. Keras no longer all-reduces
an input batch in `_maybe_symbolic_build`, and tensorflow#72388 is fixed).
`check_keras()` refuses other Keras versions, so an upgrade cannot silently
run an override of a private method that changed; the fast test
tests/trainer/training/test_train.py::test_multiworker_workaround_private_api fails
loudly when the overridden method's signature or its call sites change.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import tensorflow as tf

from trainer.training import augment
from trainer.training import config as config_lib
from trainer.training.keras_workarounds import multi_step
from trainer.training.keras_workarounds import pins as keras_pins

# Keras versions (major.minor) this work-around was checked against: the project's one list.
KERAS_VERSIONS_CHECKED = keras_pins.KERAS_VERSIONS_CHECKED
# The private method overridden, and the parameters it must keep.
OVERRIDDEN_METHOD = "_maybe_symbolic_build"
OVERRIDDEN_PARAMETERS = ("self", "iterator", "data_batch")


def check_keras(version: str = keras.__version__) -> None:
    """Raises RuntimeError unless `version` is one this work-around was checked against."""
    keras_pins.require_checked(
        "trainer/training/keras_workarounds/multiworker.py "
        f"(overrides Keras' private `{OVERRIDDEN_METHOD}`)",
        KERAS_VERSIONS_CHECKED,
        "run tests/trainer/training/test_multiworker.py without the work-around (see its removal "
        "condition); if it still fails, re-check the override and add the version.",
        version,
    )


def _keras_reduces_across_workers(strategy: tf.distribute.Strategy) -> bool:
    """Keras' own test for the multi-worker reduce of the step's logs (bug 2 above)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    return bool(tf_trainer._collective_all_reduce_multi_worker(strategy))  # noqa: SLF001


def private_api_signature() -> tuple[str, ...]:
    """The parameters of the Keras method the twin overrides, as Keras defines it now."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    method = getattr(TensorFlowTrainer, OVERRIDDEN_METHOD, None)
    if method is None:
        return ()
    return tuple(inspect.signature(method).parameters)


def example_batch(element_spec) -> object:
    """A zero batch of one element of a dataset with `element_spec` (unknown dims -> 1).

    Derived from the dataset, not from the data contract, so a change to the
    pipeline's outputs (a sample-weight column, another image size) needs no
    change here.
    """

    def zeros(spec: tf.TensorSpec) -> np.ndarray:
        shape = [1 if dim is None else dim for dim in spec.shape.as_list()]
        return np.zeros(shape, spec.dtype.as_numpy_dtype)

    return tf.nest.map_structure(zeros, element_spec)


class MultiWorkerTwin(multi_step.MultiStepModel):
    """The same layers as a functional model, with the two bugs above worked around.

    A `MultiStepModel`, like the single-worker fit model: its train step augments
    the batch on the accelerator (`trainer.training.augment`) and several steps run per
    call (`trainer.training.keras_workarounds.multi_step`).
    """

    def configure(self, strategy: tf.distribute.Strategy, element_spec) -> None:
        self._dfd_strategy = strategy
        self._dfd_example = example_batch(element_spec)
        self._dfd_vector_logs = _keras_reduces_across_workers(strategy)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        del iterator, data_batch  # Shapes and dtypes come from the example batch.
        with self._dfd_strategy.scope():
            self._symbolic_build(data_batch=self._dfd_example)

    def _for_keras_reduce(self, logs: dict) -> dict:
        if not self._dfd_vector_logs:
            return logs
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}

    def train_step(self, data):
        return self._for_keras_reduce(super().train_step(data))

    def test_step(self, data):
        return self._for_keras_reduce(super().test_step(data))

    def make_test_function(self, force=False):
        """Validation with several steps per call across workers: one-step calls in a loop (bug 3).

        Keras' own multi-step test function checks for the input's end inside its
        `tf.while_loop` (`has_next`, a `tf.cond`); across worker processes that check
        fails ("You must feed a value for placeholder tensor 'while/cond/Placeholder'",
        found by the 2-worker test with `--steps_per_execution=2`). A fixed-count loop like
        `multi_step`'s would run past the last, shorter call of a validation pass, so
        here each call runs up to `steps_per_execution` compiled steps from Python and
        stops at the input's end. Validation is a small share of a run; training keeps
        the compiled loop.
        """
        if self.test_function is not None and not force:
            return self.test_function
        if self.steps_per_execution == 1 or not self._dfd_vector_logs:
            return super().make_test_function(force=force)
        from keras.src.backend.tensorflow.trainer import reduce_per_replica

        strategy, steps = self._dfd_strategy, int(self.steps_per_execution)

        def one_step_on_data(data):
            outputs = strategy.run(self.test_step, args=(data,))
            return reduce_per_replica(outputs, strategy, reduction="auto")

        if not self.run_eagerly:
            one_step_on_data = tf.function(one_step_on_data, reduce_retracing=True)

        def function(iterator):
            outputs = None
            for _ in range(steps):
                try:
                    data = next(iterator)
                except (StopIteration, tf.errors.OutOfRangeError):
                    if outputs is None:
                        raise  # Keras ends the pass on it.
                    break
                outputs = one_step_on_data(data)
            return outputs

        self.test_function = function
        return function


def twin(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    element_spec,
    config: config_lib.TrainConfig,
) -> keras.Model:
    """The multi-worker twin of `model` (same layers and weights), for `fit` only.

    Args:
        model: a functional model (inputs and outputs known).
        strategy: the MultiWorkerMirroredStrategy `fit` runs under.
        element_spec: `element_spec` of one input pipeline's batches (per replica).
        config: the run's configuration (the train step's augmentation).

    Raises:
        RuntimeError: on a Keras version the work-around was not checked against.
    """
    check_keras()
    with strategy.scope():
        result = augment.training_model(model, config, model_class=MultiWorkerTwin)
    result.configure(strategy, element_spec)
    return result
