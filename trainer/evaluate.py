r"""Evaluates an exported detector on a TFDS split: `python -m trainer.evaluate`.

    python -m trainer.evaluate --model_dir=demo_out/model --data_dir=demo_out/data \
        --threshold=eer --write_threshold
    python -m trainer.evaluate --model_dir=demo_out/model --data_dir=demo_out/data \
        --perturbations=all                       # + the robustness report

The decision threshold is chosen on one split (`--threshold_split`, default
`validation`) with `--threshold=eer|max_f1|<number>`, then applied unchanged to
the evaluated split (`--split`, default `test`): choosing it on the split it is
measured on would flatter every thresholded figure. The report says which rule
and split gave the threshold, and `--write_threshold` records it in the
export's detector.json so that `trainer.predict` and batch scoring use it.

Writes to `--report_dir` (default `<model_dir>/report`): report.json,
report.md, scores.csv (one row per image: id, label, p_fake) and plots/ with
ROC, precision-recall, confusion matrix, per-class score histogram and
reliability diagram. Scores come from the exported SavedModel, the artefact
that is shipped, not from the Keras model it was made from.

What the dataset carries adds to the report:
- a `source` feature (generator or origin of each example): figures per source;
- a `video_id` feature (frames cut from videos): frame scores are aggregated per
  track and per video with `trainer.aggregation`, and the video-level figures
  are reported beside the frame-level ones (video_scores.csv holds one row per
  video), as DeepfakeBench reports both.

`--perturbations` re-scores the split under named perturbations of the JPEG
bytes (`trainer.evaluation.perturbations`: JPEG re-compression, down-up scaling, blur,
noise, a social-platform chain) at several strengths, at the same fixed
threshold, and adds AUC, EER and accuracy per perturbation and strength to
the report, with plots/robustness.png.
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import os
import sys

from absl import app, flags

from preprocessing import cli, paths, schema
from trainer import export, metrics
from trainer.evaluation import evaluate_lib, perturbations, report_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    flags.DEFINE_string(
        "model_dir",
        None,
        "Training output folder; the export is <model_dir>/export and the "
        "report goes to <model_dir>/report unless --export_dir/--report_dir say otherwise.",
    )
    flags.DEFINE_string("export_dir", None, "Exported detector (default <model_dir>/export).")
    flags.DEFINE_string(
        "data_dir", None, "TFDS data_dir holding the prepared dataset (local or gs://)."
    )
    flags.DEFINE_string(
        "dataset",
        schema.DATASET_NAME,
        "TFDS dataset name[/config][:version], e.g. real_and_fake_faces/drop_duplicates.",
    )
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_string(
        "threshold", "eer", "eer | max_f1 (chosen on --threshold_split) | a number in [0, 1]."
    )
    flags.DEFINE_string(
        "threshold_split", "validation", "Split the eer/max_f1 threshold is chosen on."
    )
    flags.DEFINE_boolean(
        "write_threshold",
        False,
        "Record the chosen threshold in the export's detector.json "
        "(what trainer.predict and batch scoring apply).",
    )
    flags.DEFINE_string("report_dir", None, "Where the report goes (default <model_dir>/report).")
    flags.DEFINE_integer("batch_size", 64, "Images per call of the serving signature.")
    flags.DEFINE_integer(
        "max_examples", 0, "Score at most this many images per split (0 = all); for quick looks."
    )
    flags.DEFINE_integer(
        "calibration_bins", metrics.DEFAULT_CALIBRATION_BINS, "Bins of the reliability diagram/ECE."
    )
    flags.DEFINE_list(
        "perturbations",
        [],
        "Robustness report: re-score --split under these perturbations of the JPEG bytes, at "
        "the same threshold. Each is NAME (its default strengths), NAME:S1/S2/... or 'all'. "
        "Names and defaults: "
        + "; ".join(
            f"{p.default_spec()} ({p.strength_name})" for p in perturbations.REGISTRY.values()
        )
        + ".",
    )
    flags.DEFINE_integer(
        "perturbation_seed", 0, "Seed of the random perturbations (noise); same seed, same bytes."
    )


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not (FLAGS.export_dir or FLAGS.model_dir):
        raise app.UsageError("Pass --model_dir (the trainer's output) or --export_dir.")
    if not FLAGS.data_dir:
        raise app.UsageError(
            "--data_dir is required: the TFDS data_dir the dataset was built into."
        )
    if FLAGS.threshold not in metrics.THRESHOLD_RULES:
        metrics.choose_threshold([], [], FLAGS.threshold)  # A bad number fails now, in one line.
    export_dir = FLAGS.export_dir or paths.join(FLAGS.model_dir, export.EXPORT_SUBDIR)
    # <model_dir>/report, beside <model_dir>/export, unless told otherwise.
    report_dir = FLAGS.report_dir or paths.join(
        FLAGS.model_dir or os.path.dirname(export_dir.rstrip("/")), "report"
    )
    report = evaluate_lib.run(
        export_dir=export_dir,
        data_dir=FLAGS.data_dir,
        report_dir=report_dir,
        dataset=FLAGS.dataset,
        split=FLAGS.split,
        threshold=FLAGS.threshold,
        threshold_split=FLAGS.threshold_split,
        write_threshold=FLAGS.write_threshold,
        batch_size=FLAGS.batch_size,
        max_examples=FLAGS.max_examples,
        calibration_bins=FLAGS.calibration_bins,
        perturbation_specs=FLAGS.perturbations,
        perturbation_seed=FLAGS.perturbation_seed,
    )
    print(report_lib.summary(report, report_dir))


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-evaluate")


if __name__ == "__main__":
    run_main()
