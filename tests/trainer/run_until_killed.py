"""`python -m trainer.task` with the same flags, SIGKILLed by itself right after a given step.

A test helper: the kill lands at an exact, reproducible point (after the
backup of that step was written), where killing from outside races a model
whose steps take milliseconds. The process dies as a preempted VM's would:
no Python cleanup, no `finally`, no flush.

    python -m tests.trainer.run_until_killed --kill_after_step=2 <dfd-train flags>
"""

import os
import signal

from absl import app, flags
import keras

from trainer import task
from trainer.training import train_lib

flags.DEFINE_integer("kill_after_step", 1, "SIGKILL this process after this step of the run.")


class KillAfterStep(keras.callbacks.Callback):
    """SIGKILLs the process at the end of the batch call that reaches `step` (a fresh run)."""

    def __init__(self, step: int):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv):
    del argv
    config = task.config_from_flags()
    train_lib.run(config, extra_callbacks=[KillAfterStep(flags.FLAGS.kill_after_step)])


if __name__ == "__main__":
    task.define_flags()
    app.run(main)
