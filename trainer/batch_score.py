"""Scores many images with Beam RunInference: `python -m trainer.batch_score`.

    python -m trainer.batch_score --export_dir=demo_out/model/export \
        --inputs='demo_out/raw/test/*/*.jpg' --output=demo_out/batch/scores
    # At scale, on Dataflow (needs `pip install -e ".[dataflow]"`):
    python -m trainer.batch_score --export_dir=gs://b/model/export --inputs='gs://b/images/**' \
        --output=gs://b/scores/run1 --runner=DataflowRunner \
        --beam_pipeline_options=project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py

`trainer.predict` is the one-machine tool; this is the same scoring as a Beam
job, for folders too large for one process. Inputs (files, folders, globs,
local or gs://) are expanded, read and converted to JPEG bytes by the same
code as `predict` (`trainer.scoring`); unreadable files leave through Beam's
dead-letter output instead of failing the job. `RunInference` batches the
images and calls the exported SavedModel through a small `ModelHandler`
that loads it with `tf.saved_model.load`: one model per worker process, no
training code on the workers. Every input gives exactly one JSON line in
`<output>-NNNNN-of-NNNNN.jsonl`: `{"path", "p_fake", "label"}` or
`{"path", "error"}`.

The local runner is chosen on purpose (the FnApiRunner, see
`preprocessing.runners`): Beam's DirectRunner first tries Prism, which
downloads a binary at run time and fails offline.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
import json
import sys
from typing import Any

from absl import app, flags, logging
import apache_beam as beam
from apache_beam.ml.inference import base as inference

from preprocessing import cli, runners, schema
from trainer import export, scoring

METRICS_NAMESPACE = "dfd_batch_score"
MISSING_TAG = "missing"


class ExportedDetectorHandler(inference.ModelHandler[bytes, inference.PredictionResult, Any]):
    """RunInference handler for the exported detector: JPEG bytes in, p_fake out.

    The inference of each result is a dict: `{"p_fake": float}`, or
    `{"error": str}` for an image the SavedModel's JPEG decoder rejects (a
    batch that fails is retried one image at a time, so one bad file does not
    take its batch down with it).
    """

    def __init__(self, export_dir: str, *, min_batch_size: int = 1, max_batch_size: int = 32):
        super().__init__()
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(
                f"Need 1 <= min_batch_size ({min_batch_size}) <= max_batch_size ({max_batch_size})."
            )
        self._export_dir = export_dir
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        import tensorflow as tf  # Imported on the worker, where the model is used.

        # The loaded object owns the variables: keep it, not just its signature.
        return tf.saved_model.load(self._export_dir)

    def run_inference(
        self, batch: Sequence[bytes], model, inference_args=None
    ) -> Iterable[inference.PredictionResult]:
        import tensorflow as tf

        serve = model.signatures[export.SIGNATURE_NAME]

        def score(images):
            outputs = serve(**{export.INPUT_NAME: tf.constant(list(images), dtype=tf.string)})
            return outputs[export.OUTPUT_NAME].numpy().reshape(-1).tolist()

        try:
            values = [{"p_fake": value} for value in score(batch)]
        except tf.errors.InvalidArgumentError:
            values = []
            for image in batch:
                try:
                    values.append({"p_fake": score([image])[0]})
                except tf.errors.InvalidArgumentError:
                    values.append({"error": "the model could not decode this image"})
        # The example is left out of the result: the key (the path) identifies it and the
        # image bytes would only weigh on the shuffle.
        return [inference.PredictionResult(None, value) for value in values]

    def batch_elements_kwargs(self):
        return dict(self._batching)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def _expand(pattern: str):
    """One input pattern -> its files; a pattern that matches nothing goes to MISSING_TAG."""
    files, missing = scoring.expand_inputs([pattern])
    for reject in missing:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rejected_missing").inc()
        yield beam.pvalue.TaggedOutput(MISSING_TAG, reject.to_dict())
    yield from files


def _read(path: str) -> tuple[str, bytes]:
    return path, scoring.read_image(path)


def _reject_from_dead_letter(record) -> dict:
    """Beam's dead letter `(path, (type, repr, traceback))` -> {"path", "error"}."""
    path, (error_type, error_repr, _) = record
    try:  # repr(UnreadableImageError('why')) -> 'why'
        message = ast.literal_eval(error_repr[len(error_type.__name__) :])
    except (ValueError, SyntaxError):
        message = error_repr
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rejected_unreadable").inc()
    return {"path": path, "error": str(message)}


def _to_record(keyed, threshold: float) -> dict:
    path, result = keyed
    if "error" in result.inference:
        beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rejected_undecodable").inc()
        return {"path": path, "error": result.inference["error"]}
    p_fake = float(result.inference["p_fake"])
    label = schema.LABEL_NAMES[schema.FAKE if p_fake >= threshold else schema.REAL]
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"scored_{label}").inc()
    return {"path": path, "p_fake": p_fake, "label": label}


@beam.ptransform_fn
def ScoreImages(
    patterns, export_dir: str, threshold: float, min_batch_size: int = 1, max_batch_size: int = 32
):  # noqa: N802  (Beam names composites like classes)
    """Input patterns -> one record dict per matched file, rejects included."""
    expanded = patterns | "ExpandInputs" >> beam.FlatMap(_expand).with_outputs(
        MISSING_TAG, main="files"
    )
    read = (
        expanded.files
        | "Redistribute" >> beam.Reshuffle()
        | "ReadImages"
        >> beam.Map(_read).with_exception_handling(exc_class=scoring.UnreadableImageError)
    )
    handler = inference.KeyedModelHandler(
        ExportedDetectorHandler(
            export_dir, min_batch_size=min_batch_size, max_batch_size=max_batch_size
        )
    )
    scored = (
        read.good
        | "RunInference" >> inference.RunInference(handler)
        | "ToRecords" >> beam.Map(_to_record, threshold=threshold)
    )
    unreadable = read.bad | "UnreadableToRecords" >> beam.Map(_reject_from_dead_letter)
    return (scored, unreadable, expanded[MISSING_TAG]) | "AllResults" >> beam.Flatten()


def build_pipeline(
    pipeline: beam.Pipeline,
    *,
    export_dir: str,
    inputs: Sequence[str],
    output: str,
    threshold: float | None = None,
    min_batch_size: int = 1,
    max_batch_size: int = 32,
    num_shards: int = 0,
):
    """Adds the scoring job to `pipeline`; returns the records PCollection (before writing).

    Args:
        threshold: overrides the one recorded in the export's detector.json.
        num_shards: output files (0 lets the runner choose).
    """
    metadata = export.read_metadata(export_dir)  # Fails now, not on the workers, if not an export.
    threshold = metadata.threshold if threshold is None else float(threshold)
    logging.info(
        "Scoring with %s at threshold %.4f (%s).",
        export_dir,
        threshold,
        metadata.threshold_source if threshold == metadata.threshold else "--threshold",
    )
    records = (
        pipeline
        | "Inputs" >> beam.Create(list(inputs))
        | "Score" >> ScoreImages(export_dir, threshold, min_batch_size, max_batch_size)
    )
    _ = (
        records
        | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
        | "WriteJsonl"
        >> beam.io.WriteToText(output, file_name_suffix=".jsonl", num_shards=num_shards)
    )
    return records


def run(
    *,
    export_dir: str,
    inputs: Sequence[str],
    output: str,
    runner: str = runners.LOCAL,
    num_workers: int | None = None,
    running_mode: str = "multi_processing",
    pipeline_options: Sequence[str] = (),
    threshold: float | None = None,
    min_batch_size: int = 1,
    max_batch_size: int = 32,
    num_shards: int = 0,
) -> dict:
    """Runs the job to completion; returns the counts of scored and rejected inputs."""
    if not inputs:
        raise ValueError("No inputs: pass --inputs with files, folders or globs.")
    if runner == runners.LOCAL:
        beam_runner, options = runners.local_runner(num_workers, running_mode)
        if pipeline_options:
            logging.warning(
                "Ignoring --beam_pipeline_options with the local runner: %s", pipeline_options
            )
    else:
        # "project=P" and "--project=P" both work, as with `preprocessing.build` and `tfds build`.
        options_list = [
            o if o.startswith("--") else f"--{o}"
            for o in (o.strip() for o in pipeline_options)
            if o
        ]
        beam_runner, options = runners.named_runner(runner, options_list)
    pipeline = beam.Pipeline(runner=beam_runner, options=options)
    build_pipeline(
        pipeline,
        export_dir=export_dir,
        inputs=inputs,
        output=output,
        threshold=threshold,
        min_batch_size=min_batch_size,
        max_batch_size=max_batch_size,
        num_shards=num_shards,
    )
    result = pipeline.run()
    result.wait_until_finish()
    counts = {}
    for counter in result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE)
    )["counters"]:
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + counter.committed
    logging.info("Batch scoring done: %s", counts)
    return counts


# ---------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    flags.DEFINE_string(
        "export_dir", None, "Exported detector: <model_dir>/export written by trainer.task."
    )
    flags.DEFINE_list("inputs", None, "Comma-separated files, folders or globs (local or gs://).")
    flags.DEFINE_string(
        "output", None, "Output prefix: writes <output>-NNNNN-of-NNNNN.jsonl (local or gs://)."
    )
    flags.DEFINE_float(
        "threshold", None, "Override the threshold recorded in the export's detector.json."
    )
    flags.DEFINE_string(
        "runner",
        runners.LOCAL,
        "'local' (FnApiRunner on this machine) or a Beam runner name, "
        "e.g. DataflowRunner, FlinkRunner, PrismRunner.",
    )
    flags.DEFINE_integer("num_workers", None, "Local worker processes (default: one per core).")
    flags.DEFINE_enum(
        "running_mode", "multi_processing", list(runners.RUNNING_MODES), "Local runner mode."
    )
    flags.DEFINE_list(
        "beam_pipeline_options",
        [],
        "Comma-separated Beam options for a named runner, "
        "e.g. project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py.",
    )
    flags.DEFINE_integer("min_batch_size", 1, "Smallest batch RunInference sends to the model.")
    flags.DEFINE_integer("max_batch_size", 32, "Largest batch RunInference sends to the model.")
    flags.DEFINE_integer("num_shards", 0, "Output files (0: the runner chooses).")


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}; pass inputs with --inputs=a,b,c.")
    for name in ("export_dir", "inputs", "output"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    counts = run(
        export_dir=FLAGS.export_dir,
        inputs=FLAGS.inputs,
        output=FLAGS.output,
        runner=FLAGS.runner,
        num_workers=FLAGS.num_workers,
        running_mode=FLAGS.running_mode,
        pipeline_options=FLAGS.beam_pipeline_options,
        threshold=FLAGS.threshold,
        min_batch_size=FLAGS.min_batch_size,
        max_batch_size=FLAGS.max_batch_size,
        num_shards=FLAGS.num_shards,
    )
    print(json.dumps({"output": f"{FLAGS.output}-*.jsonl", **counts}, sort_keys=True))


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-batch-score")


if __name__ == "__main__":
    run_main()
