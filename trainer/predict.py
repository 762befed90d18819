"""Scores image files with an exported detector: `python -m trainer.predict`.

    python -m trainer.predict --export_dir=demo_out/model/export face1.jpg photos/ 'gs://b/x/*.png'
    python -m trainer.predict --export_dir=... --output=scores.csv photos/
    python -m trainer.predict --export_dir=... --explain --explain_dir=cams/ face1.jpg

Inputs are files, folders (searched recursively), globs, local or `gs://`.
Each image gets `p_fake` and a label at the threshold recorded in the export's
`detector.json` (`trainer.evaluate --write_threshold` calibrates it on the
validation split). A file that cannot be read or is not an image is reported
on its own line with the reason and never stops the rest of the batch.

Only the exported SavedModel is needed (TensorFlow, no training code), so the
same command runs on a laptop next to a downloaded export. `--explain` is the
exception: Grad-CAM needs the Keras model (`model.keras` beside the export).
"""

from __future__ import annotations

from collections.abc import Sequence
import csv
import dataclasses
import io
import json
import os
import sys

from absl import app, flags, logging
import tensorflow as tf

from preprocessing import cli, paths
from trainer.scoring import Detector, Prediction, expand_inputs, predict_files

OUTPUT_FORMATS = ("csv", "jsonl")


def write_results(
    results: Sequence[Prediction], output: str, output_format: str | None = None
) -> str:
    """Writes CSV or JSONL (by `output_format`, else by extension) to a local or gs:// path."""
    output_format = (output_format or os.path.splitext(output)[1].lstrip(".")).lower()
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(
            f"Cannot tell the format of --output={output!r}: use a .csv or .jsonl name, "
            f"or --output_format={'|'.join(OUTPUT_FORMATS)}."
        )
    parent = os.path.dirname(output)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(output, "w") as f:
        if output_format == "jsonl":
            for result in results:
                f.write(json.dumps(result.to_dict()) + "\n")
        else:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=["path", "p_fake", "label", "error"])
            writer.writeheader()
            for result in results:
                writer.writerow(dataclasses.asdict(result))
            f.write(text.getvalue())
    return output


def format_table(results: Sequence[Prediction]) -> str:
    """A fixed-width table for the terminal: path, p_fake, label (or the error)."""
    width = max([len("path")] + [len(result.path) for result in results])
    lines = [f"{'path':<{width}}  {'p_fake':>7}  label"]
    for result in results:
        if result.error is None:
            lines.append(f"{result.path:<{width}}  {result.p_fake:7.4f}  {result.label}")
        else:
            lines.append(f"{result.path:<{width}}  {'-':>7}  error: {result.error}")
    return "\n".join(lines)


def run(
    export_dir: str,
    inputs: Sequence[str],
    *,
    threshold: float | None = None,
    output: str | None = None,
    output_format: str | None = None,
    batch_size: int = 32,
    explain: bool = False,
    explain_dir: str | None = None,
    keras_model: str | None = None,
    explain_layer: str | None = None,
) -> dict:
    """Scores `inputs`, writes `output` if given, and Grad-CAM PNGs if `explain`.

    Returns:
        {"results": [Prediction, ...] in input order (rejects included),
         "explanations": [(input path, PNG path), ...], "threshold": float}.
    """
    detector = Detector(export_dir, threshold=threshold)
    files, missing = expand_inputs(inputs)
    for reject in missing:
        logging.warning("Skipping %s: %s", reject.path, reject.error)
    results = missing + list(predict_files(detector, files, batch_size))
    scored = [result for result in results if result.error is None]
    logging.info(
        "Scored %d of %d inputs at threshold %.4f; %d rejected.",
        len(scored),
        len(results),
        detector.threshold,
        len(results) - len(scored),
    )
    if output:
        write_results(results, output, output_format)
        logging.info("Wrote %s", output)
    explanations = []
    if explain and scored:
        from trainer import explain as explain_lib  # Lazy: Grad-CAM loads Keras and the full model.

        explain_dir = explain_dir or paths.join(
            os.path.dirname(output) if output else os.getcwd(), "explanations"
        )
        explanations = list(
            explain_lib.explain_files(
                keras_model or explain_lib.default_keras_model_path(export_dir),
                [result.path for result in scored],
                explain_dir,
                image_size=detector.metadata.image_size,
                threshold=detector.threshold,
                layer_name=explain_layer,
            )
        )
    return {"results": results, "explanations": explanations, "threshold": detector.threshold}


# ---------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    flags.DEFINE_string(
        "export_dir", None, "Exported detector: <model_dir>/export written by trainer.task."
    )
    flags.DEFINE_float(
        "threshold", None, "Override the threshold recorded in the export's detector.json."
    )
    flags.DEFINE_string(
        "output", None, "Also write the results here (.csv or .jsonl; local or gs://)."
    )
    flags.DEFINE_enum(
        "output_format",
        None,
        list(OUTPUT_FORMATS),
        "Format of --output when its name does not say.",
    )
    flags.DEFINE_integer("batch_size", 32, "Images scored per model call.")
    flags.DEFINE_boolean(
        "explain", False, "Write a Grad-CAM overlay PNG per scored image (needs model.keras)."
    )
    flags.DEFINE_string(
        "explain_dir",
        None,
        "Where --explain writes its PNGs; default <output dir or cwd>/explanations.",
    )
    flags.DEFINE_string(
        "keras_model", None, "Keras model for --explain; default model.keras beside the export."
    )
    flags.DEFINE_string(
        "explain_layer",
        None,
        "Layer Grad-CAM reads; default the backbone's last 4-D output "
        "(conv5_block3_out for ResNet50).",
    )


def main(argv: Sequence[str]) -> int:
    inputs = list(argv[1:])
    if not FLAGS.export_dir:
        raise app.UsageError(
            "--export_dir is required: the <model_dir>/export folder written by trainer.task."
        )
    if not inputs:
        raise app.UsageError("Give at least one image file, folder or glob after the flags.")
    outcome = run(
        FLAGS.export_dir,
        inputs,
        threshold=FLAGS.threshold,
        output=FLAGS.output,
        output_format=FLAGS.output_format,
        batch_size=FLAGS.batch_size,
        explain=FLAGS.explain,
        explain_dir=FLAGS.explain_dir,
        keras_model=FLAGS.keras_model,
        explain_layer=FLAGS.explain_layer,
    )
    print(format_table(outcome["results"]))
    for path, png in outcome["explanations"]:
        print(f"Grad-CAM: {path} -> {png}")
    # Non-zero only when nothing at all could be scored: rejects are reported, not fatal.
    return 0 if any(result.error is None for result in outcome["results"]) else 1


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-predict")


if __name__ == "__main__":
    run_main()
