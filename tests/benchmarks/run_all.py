"""Runs every `bench_*.py` beside this file, one after the other (`make bench`).

Benchmarks are not tests: they are run on purpose, on a quiet machine, and
print figures to copy into BENCHMARKS.md. Each script is standalone and takes
its own flags; this runner only passes `--output_dir`.
"""

import pathlib
import subprocess
import sys


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    output_dir = here.parents[1] / "bench_out"
    failures = 0
    for script in sorted(here.glob("bench_*.py")):
        print(f"== {script.name}", flush=True)
        result = subprocess.run(
            [sys.executable, str(script), f"--output_dir={output_dir / script.stem}"], check=False
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
