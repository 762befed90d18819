"""On real GPUs only (marker `gpu`; conftest.py skips these where TensorFlow sees no GPU).

No GPU is reachable on the build machine, so the multi-GPU path is otherwise proven on
CPU replicas (test_shipped_gpu_defaults.py); these check what only a GPU shows: the
defaults the trainer resolves there, and the benchmark's grid of them (XLA included on
one GPU, where the replica-safe loss scaling takes its no-merge-call branch) running on
every GPU without a failed row. Run them on a GPU box with `pytest -m gpu -p no:xdist`.
"""

import pytest

from tests.benchmarks import bench_gpu
from trainer.training import distribution, precision

pytestmark = pytest.mark.gpu


def test_the_trainer_resolves_the_gpu_defaults():
    strategy = distribution.get_strategy("auto")
    assert distribution.device_kind(strategy) == "GPU"
    assert precision.resolve("auto", "GPU") == "mixed_float16"
    assert distribution.resolve_steps_per_execution(0, strategy) == 8
    assert distribution.resolve_jit_compile(None, strategy) == (strategy.num_replicas_in_sync == 1)


def test_the_benchmark_grid_runs_on_every_gpu_without_a_failed_row(tmp_path):
    code = bench_gpu.main(
        [
            f"--output_dir={tmp_path}",
            "--model=tiny",
            "--image_size=32",
            "--jpeg_size=40",
            "--num_images=64",
            "--per_replica_batch=4",
            "--steps_per_execution=1,8",
            "--timed_steps=8",
            "--repeats=1",
            "--warmup_steps=1",
            "--pipeline_batches=2",
        ]
    )
    assert code == 0
