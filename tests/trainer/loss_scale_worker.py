"""One worker of the two-process loss-scale test (run by tests/trainer/training/test_loss_scale.py).

Each process is one worker of a MultiWorkerMirroredStrategy cluster read from TF_CONFIG
and holds one replica (one CPU device). A one-weight float16 Dense model takes two
`fit` steps of one example per worker: in step 1 only worker `--overflow_worker`'s
example overflows float16, in step 2 no example does. After each step the worker
prints one JSON line: its kernel, loss scale and growth counter.

`--plain` compiles with Keras' own LossScaleOptimizer (what the fix replaces), to show
what goes wrong without it.

`--steps_per_execution=N` (N > 1) runs the trainer's fit model instead
(`train_lib.fit_model`: the multi-worker twin with the project's multi-step loop) and
`fit`s both steps in one call; the worker prints one JSON line after the call (step 2).
"""

import json
import sys

from absl import app, flags
import keras
import numpy as np
import tensorflow as tf

from tests.trainer import loss_scale_cases
from trainer.training import config as config_lib
from trainer.training import precision, train_lib

flags.DEFINE_integer("overflow_worker", 1, "The worker whose step-1 example overflows.")
flags.DEFINE_bool("plain", False, "Use Keras' own LossScaleOptimizer (no fix).")
flags.DEFINE_integer("steps_per_execution", 1, "> 1: both steps in one fit call.")
FLAGS = flags.FLAGS


class _VectorLogsModel(keras.Model):
    """Returns each step's logs as 1-element vectors.

    Keras 3.15 averages them across workers with `strategy.reduce("MEAN", v, axis=0)`,
    which fails on scalars (tensorflow#72388; the trainer works around it the same way).
    """

    def train_step(self, data):
        return {k: tf.reshape(v, [1]) for k, v in super().train_step(data).items()}


def _print_state(worker: int, step: int, model: keras.Model) -> None:
    print(json.dumps({"worker": worker, "step": step, **loss_scale_cases.state(model)}))
    sys.stdout.flush()


class _PrintState(keras.callbacks.Callback):
    def __init__(self, worker: int):
        super().__init__()
        self.worker = worker

    def on_train_batch_end(self, batch, logs=None):
        _print_state(self.worker, batch + 1, self.model)


def fit_in_one_call(strategy, worker: int) -> None:
    """Both steps in one call of the trainer's fit model (the multi-step loop)."""

    def per_worker(context):
        overflow = [FLAGS.overflow_worker == context.input_pipeline_id, False]
        x = np.concatenate([loss_scale_cases.examples(1, 0 if o else None) for o in overflow])
        return tf.data.Dataset.from_tensor_slices((x, np.zeros_like(x))).batch(1)

    dataset = strategy.distribute_datasets_from_function(per_worker)
    config = config_lib.TrainConfig(data_dir="unused", model_dir="unused", flip=False)
    with strategy.scope():
        model = loss_scale_cases.one_weight_model()
        element_spec = per_worker(tf.distribute.InputContext()).element_spec
        fit_model = train_lib.fit_model(model, strategy, config, element_spec)
        optimizer = precision.for_compile(loss_scale_cases.sgd(), model.dtype_policy)
        fit_model.compile(
            optimizer=optimizer, loss="mse", steps_per_execution=FLAGS.steps_per_execution
        )
    fit_model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0, callbacks=[_PrintState(worker)])


def main(argv):
    del argv
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    worker = strategy.cluster_resolver.task_id
    keras.mixed_precision.set_global_policy("mixed_float16")
    if FLAGS.steps_per_execution > 1:
        fit_in_one_call(strategy, worker)
        return
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
        _print_state(worker, step, model)


if __name__ == "__main__":
    app.run(main)
