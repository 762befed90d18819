"""Smoke test: the GPU benchmark runs end to end on the CPU at tiny sizes, so it cannot rot.

Both phases and both inputs (synthetic, real) run here, with steps_per_execution=2
(so the timer's per-execution windows are exercised); other precisions, XLA and
other steps_per_execution values are the same code path with other values.
"""

import json

from tests.benchmarks import bench_gpu


def test_gpu_benchmark_runs_on_cpu_at_tiny_sizes(tmp_path, capsys):
    code = bench_gpu.main(
        [
            f"--output_dir={tmp_path}",
            "--model=tiny",
            "--image_size=32",
            "--jpeg_size=40",
            "--num_images=32",
            "--per_replica_batch=4",
            "--strategy=one_device",
            "--precisions=float32",
            "--phases=head,fine_tune",
            "--jit_compile=off",
            "--steps_per_execution=2",
            "--inputs=synthetic,real",
            "--timed_steps=2",
            "--repeats=1",
            "--warmup_steps=1",
            "--pipeline_batches=2",
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    assert len(runs) == 2 * 2
    assert [r for r in runs if "error" in r] == []
    assert all(r["images_per_second"] > 0 and r["timed_steps"] >= 2 for r in runs)
    assert results["pipeline"]["cpu_seconds_per_image"] > 0
    table = capsys.readouterr().out
    assert "| float32 | fine_tune | off | 2 | real |" in table
