"""The optimizer of each training phase: the one place where it is created.

`make_optimizer` is the single constructor; `trainer.training.train_lib.compile_model`
calls it once per phase and hands the result to `model.compile`. Anything that
must wrap the optimizer (loss scaling under a mixed-precision policy) wraps
the return value of this one call.
"""

from __future__ import annotations

import keras

from trainer.training import config as config_lib


def learning_rate_schedule(
    learning_rate: float, total_steps: int, warmup_steps: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 1% of `learning_rate` over `warmup_steps`, then cosine decay to 0.

    Warm-up keeps the first steps of a phase (a random head, or layers just
    unfrozen) from taking full-size steps on large, noisy gradients.
    """
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate * 0.01,
            decay_steps=max(1, total_steps - warmup_steps),
            warmup_target=learning_rate,
            warmup_steps=warmup_steps,
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate, decay_steps=max(1, total_steps)
    )


def make_optimizer(
    config: config_lib.TrainConfig, learning_rate: float, total_steps: int, phase_epochs: int
) -> keras.optimizers.Optimizer:
    """AdamW or SGD (per `config.optimizer`) for one phase of `total_steps` steps.

    Args:
        config: the run's configuration (optimizer kind, warm-up, weight decay, momentum).
        learning_rate: the phase's peak learning rate.
        total_steps: optimizer steps in the phase (its epochs x steps per epoch).
        phase_epochs: epochs in the phase; `config.warmup_epochs` is counted in them.

    Returns:
        An unwrapped Keras optimizer; loss scaling, if any, is applied by the caller.
    """
    warmup = int(config.warmup_epochs * total_steps / max(1, phase_epochs))
    warmup = max(min(warmup, total_steps - 1), 0)
    schedule = learning_rate_schedule(learning_rate, total_steps, warmup)
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.SGD(
            learning_rate=schedule,
            momentum=config.momentum,
            nesterov=True,
            weight_decay=config.weight_decay or None,
        )
    # Decaying biases and BatchNorm scales only fights the normalisation.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer
