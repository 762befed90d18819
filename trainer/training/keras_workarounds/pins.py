"""The rule of every Keras work-around in the trainer: run only on the Keras it was checked on.

The work-arounds `keras_workarounds.multiworker`, `keras_workarounds.multi_step` and
`keras_workarounds.loss_scale` override or call private Keras code; an upgrade could
change that code under them silently. Each refuses any Keras whose major.minor is not
in `KERAS_VERSIONS_CHECKED`, with a message that says how to re-check it.

`KERAS_VERSIONS_CHECKED` is the one list of checked versions: setup.py admits only
them (`keras>=3.15,<3.16`; tests/trainer/training/test_keras_pins.py fails when the
two disagree or the installed Keras is outside the list), and the canary in that test
file says when the registry has a newer minor than the checked one (docs/architecture.md,
"Keras work-arounds", says what to do then).
"""

from __future__ import annotations

import keras

# Keras versions (major.minor) every work-around was checked against. Adding one means
# re-running each module's removal-condition test on it (docs/architecture.md).
KERAS_VERSIONS_CHECKED = ("3.15",)


def require_checked(
    work_around: str,
    checked: tuple[str, ...],
    fix: str,
    version: str = keras.__version__,
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
