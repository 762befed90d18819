"""Process-wide test setup, run before any test module imports TensorFlow ops.

The CPU is split into two logical devices here, once per test process (each
pytest-xdist worker is a process), because TensorFlow only accepts that
configuration before its runtime starts: a test that wants MirroredStrategy on
2 replicas cannot set it up after another test in the same process ran an op.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

TEST_CPU_REPLICAS = 2

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(TEST_CPU_REPLICAS)]
)
