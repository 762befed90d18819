"""One worker of the two-process loss-scale test (run by tests/trainer/training/test_loss_scale.py).

Each process is one worker of a MultiWorkerMirroredStrategy cluster read from TF_CONFIG
and holds one replica (one CPU device). A one-weight float16 Dense model takes two
`fit` steps of one example per worker: in step 1 only worker `--overflow_worker`'s
example overflows float16, in step 2 no example does. After each step the worker
prints one JSON line: its kernel, loss scale and growth counter.

`--plain` compiles with Keras' own LossScaleOptimizer (what the fix replaces), to show
what goes wrong without it.
"""

import json
import sys

from absl import app, flags
import keras
import numpy as np
import tensorflow as tf

from tests.trainer import loss_scale_cases
from trainer.training import precision

flags.DEFINE_integer("overflow_worker", 1, "The worker whose step-1 example overflows.")
flags.DEFINE_bool("plain", False, "Use Keras' own LossScaleOptimizer (no fix).")
FLAGS = flags.FLAGS


class _VectorLogsModel(keras.Model):
    """Returns each step's logs as 1-element vectors.

    Keras 3.15 averages them across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars (tensorflow#72388; the trainer works around it the same way).
    """

    def train_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().train_step(data).items()}


def main(argv):
    del argv
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    worker = strategy.cluster_resolver.task_id
    keras.mixed_precision.set_global_policy("mixed_float16")
    with strategy.scope():
        model = loss_scale_cases.one_weight_model(_VectorLogsModel)
        optimizer = loss_scale_cases.sgd()
        if not FLAGS.plain:
            optimizer = precision.for_compile(optimizer, model.dtype_policy)
        model.compile(optimizer=optimizer, loss="mse")

    for step, overflow_worker in enumerate([FLAGS.overflow_worker, None], start=1):
        # Each worker feeds its own one-example batch to its one replica.
        x = loss_scale_cases.examples(1, overflow=0 if worker == overflow_worker else None)
        model.train_on_batch(x, np.zeros_like(x))
        print(json.dumps({"worker": worker, "step": step, **loss_scale_cases.state(model)}))
        sys.stdout.flush()


if __name__ == "__main__":
    app.run(main)
