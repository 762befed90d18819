"""The evaluation report: report.json, report.md, PNG plots; `python -m trainer.report` prints it.

`trainer.evaluate` computes the figures; this module only lays them out, so a
report can be redrawn or summarised without a model or a dataset. The
Markdown per-class table has the layout of scikit-learn's
`classification_report`, which the original notebook printed, so old and new
results read side by side.

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
    """Defined only when this module is the program: `trainer.evaluate` imports it as a
    library and has a --report_dir of its own."""
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
