"""The rule of every Keras work-around in the trainer: run only on the Keras it was checked on.

The work-arounds `keras_workarounds.multiworker` and `keras_workarounds.multi_step`
override or call private Keras code; an upgrade could change that code under
them silently. Each therefore names the Keras versions (major.minor) it was
checked against and refuses any other with a message that says how to re-check
it. (`keras_workarounds.loss_scale` overrides one private method whose signature and
source a fast test pins instead: it must keep working across patch releases.)
"""

from __future__ import annotations

import keras


def require_checked(
    work_around: str, checked: tuple[str, ...], fix: str, version: str = keras.__version__
) -> None:
    """Raises RuntimeError unless `version`'s major.minor is in `checked`.

    Args:
        work_around: the module's path, for the message
            (e.g. "trainer/training/keras_workarounds/multi_step.py").
        checked: Keras versions (major.minor) the work-around was checked against.
        fix: what to do on another version (how to re-check, when to remove it).
        version: the Keras version to check (default: the installed one).
    """
    if ".".join(version.split(".")[:2]) not in checked:
        raise RuntimeError(
            f"{work_around} was checked on Keras {', '.join(checked)}, not {version}. Fix: {fix}"
        )
