"""Mixed-precision policy: chosen once, set before the model is built.

Keras applies the global dtype policy when layers are created, so the policy
must be in place before `model.build_model`; the logit layer asks for float32
itself. Under `mixed_float16` the optimizer given to `compile` must be loss-scaled:
`for_compile` wraps it in `loss_scale.ReplicaSafeLossScaleOptimizer` (Keras' own
would take "finite?" from one replica only); Keras then keeps it as it is.
"""

from __future__ import annotations

from absl import logging
import keras

from trainer.training import config as config_lib
from trainer.training.keras_workarounds import loss_scale

AUTO_BY_DEVICE = {"GPU": "mixed_float16", "TPU": "mixed_bfloat16", "CPU": "float32"}


def resolve(name: str, device_kind: str) -> str:
    """Maps `auto` to a policy name for the device kind ('GPU', 'TPU' or 'CPU').

    float16 on GPUs (tensor cores; needs loss scaling), bfloat16 on TPUs (same
    range as float32, no loss scaling), float32 on CPUs, where reduced precision
    is usually slower, not faster.

    Raises:
        ValueError: naming an unknown policy or device kind.
    """
    if name not in config_lib.PRECISIONS:
        raise ValueError(f"Precision {name!r} is not one of {list(config_lib.PRECISIONS)}.")
    if name != "auto":
        return name
    if device_kind not in AUTO_BY_DEVICE:
        raise ValueError(f"Device kind {device_kind!r} is not one of {sorted(AUTO_BY_DEVICE)}.")
    return AUTO_BY_DEVICE[device_kind]


def set_policy(name: str, device_kind: str) -> str:
    """Resolves and sets the global Keras dtype policy; returns the policy name set."""
    policy = resolve(name, device_kind)
    keras.mixed_precision.set_global_policy(policy)
    logging.info("Precision policy %s (asked: %s, device: %s).", policy, name, device_kind)
    return policy


def for_compile(
    optimizer: keras.optimizers.Optimizer, policy: str | keras.DTypePolicy
) -> keras.optimizers.Optimizer:
    """The optimizer to give `Model.compile` for a model under the dtype `policy`.

    `mixed_float16` needs loss scaling: the optimizer comes back wrapped in a
    `ReplicaSafeLossScaleOptimizer`, whose skip-or-apply decision is shared by
    all replicas and workers. Being a `LossScaleOptimizer`, it is not wrapped again
    by `compile`. Every other policy (float32, mixed_bfloat16: float32's exponent
    range, no loss scaling) gets the optimizer unchanged. Pass `model.dtype_policy`,
    the policy `compile` itself looks at.

    Raises:
        ValueError: for an already built Keras `LossScaleOptimizer` (its state
            cannot move into the replica-safe one); pass its inner optimizer.
    """
    name = policy if isinstance(policy, str) else policy.name
    if name != "mixed_float16" or isinstance(optimizer, loss_scale.ReplicaSafeLossScaleOptimizer):
        return optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        if optimizer.built:
            raise ValueError(
                f"Optimizer {optimizer.name!r} is a built keras LossScaleOptimizer; pass its "
                "inner_optimizer instead, to be wrapped in a ReplicaSafeLossScaleOptimizer."
            )
        return loss_scale.ReplicaSafeLossScaleOptimizer(
            optimizer.inner_optimizer,
            initial_scale=optimizer.initial_scale,
            dynamic_growth_steps=optimizer.dynamic_growth_steps,
            name=optimizer.name,
        )
    # The name Keras' compile gives its own wrapper, so variable names stay as they were.
    return loss_scale.ReplicaSafeLossScaleOptimizer(optimizer, name="loss_scale_optimizer")
