"""One place that turns a strategy name into a `tf.distribute.Strategy`.

The same training code runs on a laptop CPU, one GPU, several GPUs of one
machine, several machines and a TPU: only this module looks at the hardware.
"""

from __future__ import annotations

import json
import os

from absl import logging
import tensorflow as tf

from trainer.training import config as config_lib


def split_cpu(replicas: int) -> None:
    """Splits the first physical CPU into `replicas` logical devices.

    This lets MirroredStrategy run with several replicas on a machine without
    accelerators (tests, demos). TensorFlow only accepts it before its runtime
    starts, so call it first thing in a process.

    Raises:
        RuntimeError: the runtime already started with a different split.
    """
    if replicas <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    current = tf.config.get_logical_device_configuration(cpus[0]) or []
    if len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"--cpu_replicas={replicas}: TensorFlow already started with "
            f"{max(len(current), 1)} CPU device(s); the split must happen before any "
            "TensorFlow op runs in this process."
        ) from error


def tf_config_workers() -> int:
    """Number of workers (chief included) that TF_CONFIG declares; 0 without TF_CONFIG."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {raw[:200]!r}") from error
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_name(name: str, tpu: str = "") -> str:
    """Maps `auto` to a concrete strategy name from what this process can see."""
    if name not in config_lib.STRATEGIES:
        raise ValueError(f"Strategy {name!r} is not one of {list(config_lib.STRATEGIES)}.")
    if name != "auto":
        return name
    if tpu or tf.config.list_physical_devices("TPU"):
        return "tpu"
    if tf_config_workers() > 1:
        return "multi_worker_mirrored"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1 or (not gpus and len(tf.config.list_logical_devices("CPU")) > 1):
        return "mirrored"
    return "one_device"


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
    """TPUStrategy on `tpu`; a ValueError naming the TPU when it cannot be reached.

    The resolver asks the metadata server or the TPU API, so off a TPU VM (or
    with a wrong name) it fails deep in urllib or gRPC; one line says which
    TPU and what to check.
    """
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (OSError, RuntimeError, ValueError, tf.errors.OpError) as error:
        # urllib.error.URLError is an OSError.
        shown = f"--tpu={tpu}" if tpu else "the local TPU (no --tpu given)"
        raise ValueError(
            f"--strategy=tpu: cannot reach {shown}: {' '.join(str(error).split())[:300]}. "
            "Fix: run on a TPU VM (or give --tpu=<name> of a TPU in this project and zone), "
            "or choose another --strategy."
        ) from error


def get_strategy(
    name: str = "auto", *, cpu_replicas: int = 0, tpu: str = ""
) -> tf.distribute.Strategy:
    """Creates the distribution strategy.

    Args:
        name: one of `config.STRATEGIES`; `auto` picks TPU, multi-worker (TF_CONFIG
            with several workers), mirrored (several GPUs, or several logical CPUs)
            or one device.
        cpu_replicas: split the CPU into this many logical devices first (0/1: no split).
        tpu: TPU name or address for the cluster resolver ('' = local / from environment).

    Returns:
        The strategy; its `num_replicas_in_sync` is what the global batch is split by.

    Raises:
        ValueError: naming an unknown strategy.
    """
    split_cpu(cpu_replicas)
    resolved = resolve_name(name, tpu)
    if resolved == "tpu":
        strategy = _tpu_strategy(tpu)
    elif resolved == "multi_worker_mirrored":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif resolved == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    logging.info(
        "Strategy %s (asked: %s) with %d replica(s).",
        display_name(strategy),
        name,
        strategy.num_replicas_in_sync,
    )
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the shared artifacts (always true outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()
    )


def device_kind(strategy: tf.distribute.Strategy) -> str:
    """'TPU', 'GPU' or 'CPU': what the strategy's replicas run on."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPU"
    devices = strategy.extended.worker_devices
    return "GPU" if any("GPU" in d.upper() for d in devices) else "CPU"


def display_name(strategy: tf.distribute.Strategy) -> str:
    """The public name of the strategy's class (MultiWorkerMirroredStrategy, not its alias)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    return type(strategy).__name__


# Steps run per call into the compiled train function, by device kind. On a CPU
# a step of the real model takes far longer than Keras' return to Python, so 1
# costs nothing and keeps every callback per-step. A GPU step of ResNet50 at
# batch 256 takes ~50 ms (~5k img/s on an H100): the host round trip, batch
# callbacks and logging between steps then idle the device for a measurable
# share, so several steps run per call; TPUs are driven from a remote host
# and need longer loops still (not checked here: no TPU).
STEPS_PER_EXECUTION_BY_DEVICE = {"CPU": 1, "GPU": 8, "TPU": 32}


def resolve_steps_per_execution(asked: int, strategy: tf.distribute.Strategy) -> int:
    """`asked` if > 0, else the default for the strategy's device kind.

    1 on CPUs (a step dwarfs Keras' return to Python), 8 on GPUs, 32 on TPUs (a
    fast device would idle between steps while Python runs callbacks). Under the
    mirrored strategies the steps run in `keras_workarounds.multi_step`'s loop (Keras 3.15's
    own fails there, keras #19246).
    """
    if asked > 0:
        return asked
    return STEPS_PER_EXECUTION_BY_DEVICE.get(device_kind(strategy), 1)


def xla_known_to_fail(strategy: tf.distribute.Strategy) -> bool:
    """Whether XLA-compiled train steps are known to break under `strategy`.

    True with several replicas on GPUs or CPUs (MirroredStrategy,
    MultiWorkerMirroredStrategy): Keras 3 + tf.distribute + XLA has open breakages
    (keras #17187, tensorflow #56423), and on split CPU devices it fails outright
    ("Trying to access resource ... replica_1"). TPUs always compile with XLA.
    The trainer never turns XLA on there by itself and warns when asked to;
    `make bench-gpu` leaves such rows out of its grid.
    """
    return device_kind(strategy) != "TPU" and strategy.num_replicas_in_sync > 1


def resolve_jit_compile(asked: bool | None, strategy: tf.distribute.Strategy) -> bool:
    """Whether train steps compile with XLA: `asked` if set, else where it is known to work.

    - TPU: always (TPUStrategy compiles with XLA whatever the flag says).
    - One GPU (OneDeviceStrategy): on; Keras' own "auto" turns it on there too.
    - Several replicas (MirroredStrategy, MultiWorkerMirroredStrategy): off
      (`xla_known_to_fail`).
    - CPU: off; XLA brings no gain for this model there and compiles slowly.
    """
    if asked is not None:
        return asked
    kind = device_kind(strategy)
    if kind == "TPU":
        return True
    return kind == "GPU" and not xla_known_to_fail(strategy)
