"""The evaluation report, summarised: `python -m trainer.report` (`dfd-report`) prints it.

Reads the report.json that `dfd-evaluate` wrote to `--report_dir` and prints
the headline, the per-class table and where the report, the scores and the
plots are: no model and no dataset needed. The layout is
`trainer.evaluation.report_lib`'s, the same as `dfd-evaluate` prints.

    python -m trainer.report --report_dir=demo_out/model/report   # headline + paths
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import sys

from absl import app, flags
import matplotlib

matplotlib.use("Agg")  # Headless: reports are written on servers and in CI.

from preprocessing import (
    cli,  # noqa: E402
)
from trainer.evaluation import report_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main` only."""
    flags.DEFINE_string(
        "report_dir", None, "Folder holding report.json (written by trainer.evaluate)."
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.report_dir:
        raise app.UsageError(
            "--report_dir is required: the folder trainer.evaluate wrote report.json to."
        )
    print(report_lib.summary(report_lib.read_report(FLAGS.report_dir), FLAGS.report_dir))


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-report")


if __name__ == "__main__":
    run_main()
