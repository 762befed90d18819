"""Process-wide test setup, run before any test module imports TensorFlow ops.

The CPU is split into two logical devices here, once per test process (each
pytest-xdist worker is a process), because TensorFlow only accepts that
configuration before its runtime starts: a test that wants MirroredStrategy on
2 replicas cannot set it up after another test in the same process ran an op.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

TEST_CPU_REPLICAS = 2

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(TEST_CPU_REPLICAS)]
)


@pytest.fixture(autouse=True)
def _fresh_collective_keys():
    """Gives every test's MirroredStrategy collective keys of its own.

    Each MirroredStrategy numbers its collective ops from the same group key, and the
    runtime remembers the shape each (group, instance) key had. Two strategies in one
    process (one pytest-xdist worker runs many tests) then collide: "Shape mismatch in
    the collective instance 100 ... expected shape [1] but another member ... [117]".
    TensorFlow's own tests avoid it the same way (tensorflow/python/distribute/
    strategy_combinations.py raises the key base before each MirroredStrategy). A
    training process creates one strategy, so the trainer itself needs nothing of this.
    """
    tf.distribute.MirroredStrategy._collective_key_base += 100_000
    yield


def pytest_collection_modifyitems(config, items):
    """Skips the tests marked `gpu` when TensorFlow sees no GPU (pytest.ini defines the marker).

    On a GPU machine they run with the rest (`make test-all` does not deselect them there;
    `pytest -m gpu` runs them alone), on the real devices.
    """
    del config
    if tf.config.list_physical_devices("GPU"):
        return
    skip = pytest.mark.skip(reason="needs a GPU: TensorFlow sees none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
