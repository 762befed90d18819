"""Evaluates an exported detector on a TFDS split: `python -m trainer.evaluate`.

    python -m trainer.evaluate --model_dir=demo_out/model --data_dir=demo_out/data \
        --threshold=eer --write_threshold

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
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import dataclasses
import io
import os
import sys
import time

from absl import app, flags, logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import cli, paths, schema
from trainer import export, metrics
from trainer import report as report_lib

SCORES_CSV = "scores.csv"
_RULE_NAMES = {"eer": "EER", "max_f1": "max-F1"}


@dataclasses.dataclass(frozen=True)
class SplitScores:
    """Every image of a split with its label and score, in the split's order."""

    ids: list[str]
    labels: np.ndarray
    scores: np.ndarray


def open_dataset(data_dir: str, dataset: str = schema.DATASET_NAME) -> tfds.core.DatasetBuilder:
    """The prepared TFDS dataset under `data_dir`; needs its files, not the builder code.

    Raises:
        FileNotFoundError: naming the folder and the command that builds it.
    """
    fix = f"Fix: build it with `python -m preprocessing.build --data_dir={data_dir} ...`."
    if not tf.io.gfile.exists(paths.join(data_dir, dataset)):
        raise FileNotFoundError(f"No TFDS dataset {dataset!r} under --data_dir={data_dir}. {fix}")
    try:
        return tfds.builder(dataset, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        # TFDS' own message lists every dataset it knows; its first line is the useful one.
        reason = str(error).splitlines()[0]
        raise FileNotFoundError(
            f"Cannot open TFDS dataset {dataset!r} under --data_dir={data_dir}: {reason} {fix}"
        ) from error


def score_split(
    builder: tfds.core.DatasetBuilder,
    split: str,
    scorer,
    *,
    batch_size: int = 64,
    max_examples: int = 0,
) -> SplitScores:
    """Scores one split with the serving function on the stored JPEG bytes.

    The bytes go to the SavedModel undecoded (`SkipDecoding`), exactly as a
    client would send them, so the served decode-and-crop is what is measured.

    Raises:
        ValueError: naming the split and listing those that exist.
    """
    if split not in builder.info.splits:
        raise ValueError(
            f"Split {split!r} is not in {builder.info.full_name} at {builder.data_dir}; "
            f"it has {sorted(builder.info.splits.keys())}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
    )
    if max_examples > 0:
        dataset = dataset.take(max_examples)
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ids, labels, scores = [], [], []
    started = time.monotonic()
    for batch in dataset:
        outputs = scorer(**{export.INPUT_NAME: batch[schema.IMAGE]})
        scores.append(outputs[export.OUTPUT_NAME].numpy().reshape(-1))
        labels.append(batch[schema.LABEL].numpy())
        ids.extend(value.decode("utf-8") for value in batch[schema.ID].numpy())
        if len(ids) % (batch_size * 20) == 0:
            logging.info("%s: scored %d images", split, len(ids))
    if not ids:
        raise ValueError(f"Split {split!r} of {builder.info.full_name} holds no examples.")
    logging.info("%s: scored %d images in %.1f s", split, len(ids), time.monotonic() - started)
    return SplitScores(
        ids, np.concatenate(labels).astype(np.int64), np.concatenate(scores).astype(np.float64)
    )


def write_scores(scores: SplitScores, path: str) -> None:
    """One row per image, so any other figure can be computed later without the model."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["id", "label", "p_fake"])
    for identifier, label, score in zip(scores.ids, scores.labels, scores.scores):
        writer.writerow([identifier, schema.LABEL_NAMES[label], f"{score:.6f}"])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text.getvalue())


def run(
    *,
    export_dir: str,
    data_dir: str,
    report_dir: str,
    dataset: str = schema.DATASET_NAME,
    split: str = "test",
    threshold: str = "eer",
    threshold_split: str = "validation",
    write_threshold: bool = False,
    batch_size: int = 64,
    max_examples: int = 0,
    calibration_bins: int = metrics.DEFAULT_CALIBRATION_BINS,
) -> dict:
    """Scores the splits, chooses the threshold, writes the report; returns report.json's content.

    Raises:
        ValueError: for a bad threshold rule or split, naming it.
        FileNotFoundError: when the export or the dataset is missing.
    """
    paths.ensure_writable(report_dir)
    metadata = export.read_metadata(export_dir)
    scorer = export.load_scorer(export_dir)
    builder = open_dataset(data_dir, dataset)

    rule = str(threshold).strip().lower()
    chosen_on = None
    if rule in metrics.THRESHOLD_RULES:
        if threshold_split == split:
            logging.warning(
                "--threshold_split=%s equals --split: the thresholded figures are optimistic.",
                split,
            )
        chosen_on = score_split(
            builder, threshold_split, scorer, batch_size=batch_size, max_examples=max_examples
        )
        value, how = metrics.choose_threshold(chosen_on.labels, chosen_on.scores, rule)
        description = f"{_RULE_NAMES[how]} on {threshold_split}"
    else:
        value, how = metrics.choose_threshold([], [], rule)  # A number: no scores needed.
        description = "fixed by --threshold"
    evaluated = (
        chosen_on
        if threshold_split == split and chosen_on is not None
        else score_split(builder, split, scorer, batch_size=batch_size, max_examples=max_examples)
    )

    plots = report_lib.write_plots(
        evaluated.labels,
        evaluated.scores,
        value,
        paths.join(report_dir, report_lib.PLOTS_DIR),
        title=f"{dataset} {split}",
        num_bins=calibration_bins,
    )
    write_scores(evaluated, paths.join(report_dir, SCORES_CSV))
    if write_threshold:
        export.write_metadata(
            export_dir,
            dataclasses.replace(metadata, threshold=float(value), threshold_source=description),
        )
        logging.info(
            "Recorded threshold %.4f (%s) in %s",
            value,
            description,
            paths.join(export_dir, export.METADATA_FILENAME),
        )
    report = {
        "export_dir": export_dir,
        "dataset": {"name": dataset, "data_dir": data_dir, "version": str(builder.info.version)},
        "split": split,
        "threshold": {
            "value": float(value),
            "rule": how,
            "chosen_on": threshold_split if chosen_on else None,
            "description": description,
            "written_to_export": bool(write_threshold),
            "export_threshold_before": metadata.threshold,
        },
        "metrics": metrics.summarize(evaluated.labels, evaluated.scores, value, calibration_bins),
        "threshold_split_metrics": (
            metrics.summarize(chosen_on.labels, chosen_on.scores, value, calibration_bins)
            if chosen_on is not None
            else None
        ),
        "calibration_bins": calibration_bins,
        "max_examples": max_examples or None,
        "plots": plots,
        "scores_csv": paths.join(report_dir, SCORES_CSV),
        "image_size": metadata.image_size,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    written = report_lib.write_report(report, report_dir)
    logging.info("Wrote %s and %s", written["json"], written["markdown"])
    return report


# ---------------------------------------------------------------------------- command line

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
    flags.DEFINE_string("dataset", schema.DATASET_NAME, "TFDS dataset name.")
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


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not (FLAGS.export_dir or FLAGS.model_dir):
        raise app.UsageError("Pass --model_dir (the trainer's output) or --export_dir.")
    if not FLAGS.data_dir:
        raise app.UsageError(
            "--data_dir is required: the TFDS data_dir the dataset was built into."
        )
    export_dir = FLAGS.export_dir or paths.join(FLAGS.model_dir, export.EXPORT_SUBDIR)
    # <model_dir>/report, beside <model_dir>/export, unless told otherwise.
    report_dir = FLAGS.report_dir or paths.join(
        FLAGS.model_dir or os.path.dirname(export_dir.rstrip("/")), "report"
    )
    report = run(
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
    )
    print(report_lib.summary(report, report_dir))


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-evaluate")


if __name__ == "__main__":
    run_main()
