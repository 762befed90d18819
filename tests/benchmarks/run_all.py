"""Runs every `bench_*.py` beside this file, one after the other (`make bench`).

Benchmarks are not tests: they are run on purpose, on a quiet machine, and
print figures to copy into BENCHMARKS.md. Each script is standalone and takes
its own flags; this runner passes `--output_dir`, plus the flags in `FLAGS`.
`bench_gpu.py` runs here at the size that measures the per-step overhead of
steps_per_execution on a CPU (a tiny CNN at batch 8); its full GPU grid is
`make bench-gpu`.
"""

import pathlib
import subprocess
import sys

FLAGS = {
    "bench_gpu.py": [
        "--model=tiny",
        "--image_size=32",
        "--per_replica_batch=8",
        "--strategy=one_device",
        "--precisions=float32",
        "--phases=fine_tune",
        "--jit_compile=off",
        "--no_augmentation",
        "--steps_per_execution=1,8,32,128",
        "--inputs=synthetic",
        "--timed_steps=512",
        "--repeats=3",
    ],
}


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    output_dir = here.parents[1] / "bench_out"
    failures = 0
    for script in sorted(here.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        result = subprocess.run(
            [
                sys.executable,
                str(script),
                f"--output_dir={output_dir / script.stem}",
                *FLAGS.get(script.name, []),
            ],
            check=False,
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
