"""Runs every `bench_*.py` beside this file, one after the other (`make bench`).

Benchmarks are not tests: they are run on purpose, on a quiet machine, and
print figures to copy into BENCHMARKS.md. Each script is standalone and takes
its own flags; this runner passes `--output_dir`, plus the flags of each of its
runs in `RUNS` (one run with no extra flags if it is not listed). `bench_gpu.py`
runs here on 2 and 4 logical CPU replicas (MirroredStrategy, a tiny CNN at 8 per
replica): steps_per_execution 1 against 8 and 32 through the project's own
multi-step loop, the same model in the same process; its full GPU grid is
`make bench-gpu`. A script that exits non-zero (bench_gpu.py does when any row
fails) is named at the end, and the runner exits 1.
"""

import pathlib
import subprocess
import sys

_MULTI_STEP = [
    "--model=tiny",
    "--image_size=32",
    "--per_replica_batch=8",
    "--strategy=mirrored",
    "--precisions=float32",
    "--phases=fine_tune",
    "--jit_compile=off",
    "--no_augmentation",
    # Twice, in turn (1, 8, 32, 1, 8, 32): the rates compared come from interleaved rows.
    "--steps_per_execution=1,8,32,1,8,32",
    "--inputs=synthetic",
    "--timed_steps=256",
    "--repeats=3",
]
RUNS = {
    "bench_gpu.py": {
        "2_replicas": [*_MULTI_STEP, "--cpu_replicas=2"],
        "4_replicas": [*_MULTI_STEP, "--cpu_replicas=4"],
    },
}


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    output_dir = here.parents[1] / "bench_out"
    failed = []
    for script in sorted(here.glob("bench_*.py")):
        for name, flags in RUNS.get(script.name, {"": []}).items():
            label = f"{script.name} {name}".strip()
            print(f"== {label}", flush=True)
            out = output_dir / script.stem / name if name else output_dir / script.stem
            result = subprocess.run(
                [sys.executable, str(script), f"--output_dir={out}", *flags], check=False
            )
            if result.returncode != 0:
                failed.append(f"{label} (exit {result.returncode})")
    if failed:
        print(f"run_all: FAILED: {', '.join(failed)}; see their output above.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
