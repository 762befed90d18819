"""Smoke test: the GPU benchmark runs the shipped GPU defaults on CPU replicas, and fails loudly.

The defaults a user gets on GPUs: mixed_float16 (so the replica-safe loss scaling),
steps_per_execution > 1 under MirroredStrategy (so the project's multi-step loop) and
the recipe's augmentation in the train step; here on the 2 logical CPUs of conftest.py,
at tiny sizes, both inputs (synthetic, real), with steps_per_execution=2 so the timer's
per-execution windows are exercised. The grid must leave out XLA (the trainer never runs
it under several replicas), and a row that fails (a phase the trainer does not know)
must make the script exit 1 and name the row and its error.
"""

import json

from tests.benchmarks import bench_gpu

ARGS = [
    "--model=tiny",
    "--image_size=32",
    "--jpeg_size=40",
    "--num_images=32",
    "--per_replica_batch=2",
    "--strategy=mirrored",
    "--precisions=mixed_float16",
    "--jit_compile=off,on",
    "--steps_per_execution=2",
    "--inputs=synthetic,real",
    "--timed_steps=2",
    "--repeats=1",
    "--warmup_steps=1",
    "--pipeline_batches=2",
]


def test_gpu_benchmark_runs_the_shipped_defaults_and_exits_1_on_a_failed_row(tmp_path, capsys):
    code = bench_gpu.main([f"--output_dir={tmp_path}", "--phases=fine_tune,no_such_phase", *ARGS])
    out, err = capsys.readouterr()
    assert code == 1, out + err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["replicas"] == 2 and results["device_kind"] == "CPU"
    assert "xla=on rows" in results["left_out"][0] and "left out: xla=on" in out
    runs = results["runs"]
    assert [(r["phase"], r["input"]) for r in runs] == [
        ("fine_tune", "synthetic"),
        ("fine_tune", "real"),
        ("no_such_phase", "synthetic"),
        ("no_such_phase", "real"),
    ]
    assert not any(r["jit_compile"] for r in runs)
    good, bad = runs[:2], runs[2:]
    assert [r for r in good if "error" in r] == []
    assert all(r["images_per_second"] > 0 and r["timed_steps"] >= 2 for r in good)
    assert all("ValueError: Phase 'no_such_phase'" in r["error"] for r in bad)
    assert results["pipeline"]["cpu_seconds_per_image"] > 0
    assert "| mixed_float16 | fine_tune | off | 2 | real |" in out
    assert "2 of 4 rows FAILED" in err
    assert "mixed_float16 no_such_phase xla=off spe=2 synthetic: FAILED ValueError" in err
