"""Dynamic loss scaling whose "are the gradients finite?" is decided by all replicas together.

Why this module exists (upstream behaviour, checked in Keras 3.15.1, the version this
project installs): `keras/src/optimizers/loss_scale_optimizer.py`,
`LossScaleOptimizer._tf_apply`, computes `check_finite` on each replica's *local*
gradients and then, in the merge-call path taken by MirroredStrategy and
MultiWorkerMirroredStrategy on CPUs and GPUs, keeps only the first replica's answer
("Arbitrarily take `finite` from the first replica"), on the assumption that the
gradients were already all-reduced. They are not: the all-reduce happens later, inside
the inner optimizer's update. So when only another replica (or worker) overflows, the
all-reduced gradient is inf or NaN and is applied (the weights become inf) and the loss
scale does not drop. Across workers, each worker keeps its own first replica's answer,
so workers can disagree about whether to call the inner optimizer's all-reduce at all:
in the two-process test, Keras' own optimizer hung there. In the no-merge-call path
(XLA with only GPUs, or TPUs) each replica takes its own branch of the `cond`, the same
disagreement between replicas.

The fix: each replica counts its non-finite gradients (0 or 1), the count is summed
over every replica of every worker with one scalar all-reduce in the replica context,
and only then does the step choose between "apply and maybe grow the scale" and "skip
and halve the scale". Everything else (initial scale 2**15, doubling after
`dynamic_growth_steps` finite steps, halving and skipping on overflow, the variables
and their names, so backups stay loadable) is Keras' own code, called unchanged.

Remove this module when upstream reduces the flag across replicas; the test
`tests/trainer/training/test_loss_scale.py::test_upstream_still_takes_finite_from_one_replica`
fails when the upstream code it relies on changes, which is the moment to re-check;
`tests/trainer/training/test_loss_scale.py::test_upstream_optimizer_applies_another_replicas_overflow`
shows the upstream bug itself and fails the day Keras fixes it. Like the other
work-arounds, `check_keras()` refuses a Keras this override was not checked against
(`keras_workarounds.pins`), so an upgrade cannot silently run it on changed code.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from trainer import model as model_lib
from trainer.training.keras_workarounds import pins as keras_pins

# Other registered names a saved file may give this class (files written while it
# registered under the package "deepfake_detection"); each loads as this class.
OTHER_REGISTERED_NAMES = ("deepfake_detection>ReplicaSafeLossScaleOptimizer",)


def check_keras(version: str = keras.__version__) -> None:
    """Raises RuntimeError unless `version` is one this override was checked against."""
    keras_pins.require_checked(
        "trainer/training/keras_workarounds/loss_scale.py "
        "(overrides Keras' private `LossScaleOptimizer._tf_apply`)",
        keras_pins.KERAS_VERSIONS_CHECKED,
        "run tests/trainer/training/test_loss_scale.py on it; if "
        "test_upstream_optimizer_applies_another_replicas_overflow fails, Keras fixed the bug: "
        "remove the module (see its docstring), else re-check the override and add the version.",
        version,
    )


@keras.saving.register_keras_serializable(package=model_lib.KERAS_PACKAGE)
class ReplicaSafeLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' `LossScaleOptimizer` with the finiteness flag all-reduced before the step.

    Same constructor, variables, config and schedule as
    `keras.optimizers.LossScaleOptimizer`; it is one, so `Model.compile` under
    `mixed_float16` keeps it instead of wrapping it a second time.

    Raises:
        RuntimeError: when made on a Keras the override was not checked against.
    """

    def __init__(self, *args, **kwargs):
        check_keras()
        super().__init__(*args, **kwargs)

    def _tf_apply(self, grads, trainable_variables=None):
        """Overrides the private `LossScaleOptimizer._tf_apply(grads, trainable_variables)`."""
        replica_context = tf.distribute.get_replica_context()
        if replica_context is None:
            raise ValueError("apply() must be called in a replica context.")
        local_non_finite = tf.cast(tf.logical_not(self.check_finite(grads)), tf.float32)
        # A float32 count: the dtype the gradients themselves are all-reduced in.
        non_finite = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, local_non_finite)
        finite = tf.equal(non_finite, 0.0)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            # Every replica holds the same `finite`, so all take the same branch.
            keras.ops.cond(
                finite,
                lambda: self._stateful_handle_finite_grads(grads, trainable_variables),
                self._stateful_handle_non_finite_grads,
            )
            return

        def handle_cross_replica(distribution, finite, grads, trainable_variables):
            # `finite` is the same on every replica now; any local copy will do.
            finite = distribution.experimental_local_results(finite)[0]

            def apply_fn():
                distribution.extended.call_for_each_replica(
                    self._stateful_handle_finite_grads, args=(grads, trainable_variables)
                )

            # As upstream: the cond runs in the cross-replica context, because the
            # inner optimizer's apply calls `merge_call`, which a replica-context
            # cond branch may not.
            keras.ops.cond(finite, apply_fn, self._stateful_handle_non_finite_grads)

        replica_context.merge_call(handle_cross_replica, args=(finite, grads, trainable_variables))


for _name in OTHER_REGISTERED_NAMES:
    keras.saving.get_custom_objects()[_name] = ReplicaSafeLossScaleOptimizer
