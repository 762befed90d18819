"""Mixed-precision policy: chosen once, set before the model is built.

Keras applies the global dtype policy when layers are created, so the policy
must be in place before `model.build_model`; the logit layer asks for float32
itself, and Keras wraps the optimizer in a `LossScaleOptimizer` under
`mixed_float16` when the model is compiled.
"""

from __future__ import annotations

from absl import logging
import keras

from trainer import config as config_lib

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
