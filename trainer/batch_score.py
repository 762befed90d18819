r"""Scores many images with Beam RunInference, photos and videos too: `dfd-batch-score`.

    python -m trainer.batch_score --export_dir=demo_out/model/export \
        --inputs='demo_out/raw/test/*/*.jpg,clips/' --output=demo_out/batch/scores
    # At scale, on Dataflow (needs `pip install -e ".[dataflow]"`):
    python -m trainer.batch_score --export_dir=gs://b/model/export --inputs='gs://b/media/**' \
        --output=gs://b/scores/run1 --runner=DataflowRunner \
        --beam_pipeline_options=project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py

`trainer.predict` is the one-machine tool; this is the same scoring as a Beam
job, with the same stages (`trainer.inference.media`), the same reading rules and the
same records:

    ExpandInputs -> Inspect (an image: decode, find and crop faces; a video:
    probe and cut its sampling plan into chunks) -> [video chunks: Reshuffle ->
    DecodeChunks (decode, find and crop faces)] -> RunInference (face crops as
    JPEG, batched, one SavedModel per worker) -> JoinByInput -> Assemble ->
    one JSON line per input.

A video fans out into chunks of `--chunk_frames` sampled frames that any
worker can take, so one long video does not hold one worker. Every input gives
exactly one JSON line in `<output>-NNNNN-of-NNNNN.jsonl`, the record of
`trainer.predict --output=x.jsonl`: `{"path", "kind", "status", "p_fake",
"label", "faces"|"tracks"...}` or `{"path", "status", "error"}`. Per-video
timelines are `trainer.predict`'s; here the tracks are in the JSON.

The local runner is chosen on purpose (the FnApiRunner, see
`preprocessing.building.runners`): Beam's DirectRunner first tries Prism, which
downloads a binary at run time and fails offline. A job that fails removes the
`beam-temp-*` folder its output writer left, and says so.

The console shows this tool's own lines (the runner, the threshold, the
counts) and errors; the full log (Beam, TensorFlow, the worker processes) goes
to `<output>.log`, beside the output, or to the console too with --verbosity=1
(`preprocessing.tool_logging`, as for the dataset builds).
"""

from __future__ import annotations

from preprocessing import quiet_tensorflow  # noqa: F401  (first: see its docstring)

# isort: split
from collections.abc import Sequence
import json
import sys

from absl import app, flags

from preprocessing import cli, schema  # noqa: E402
from preprocessing.building import runners
from trainer import export
from trainer.inference import batch_score_lib, media, scoring

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    _define_job_flags()
    _define_runner_flags()
    media.define_media_flags()
    flags.adopt_module_key_flags(media)
    flags.DEFINE_integer(
        "chunk_frames", 8, "Sampled frames per work item: a video spreads over workers."
    )
    flags.DEFINE_boolean(
        "follow_outside_links", False, "Follow links in input folders that point outside them."
    )


def _define_job_flags() -> None:
    """The detector, the inputs, the output and the batching."""
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
    flags.DEFINE_integer("min_batch_size", 1, "Smallest batch RunInference sends to the model.")
    flags.DEFINE_integer("max_batch_size", 32, "Largest batch RunInference sends to the model.")
    flags.DEFINE_integer("num_shards", 0, "Output files (0: the runner chooses).")


def _define_runner_flags() -> None:
    """Where the Beam job runs."""
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


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}; pass inputs with --inputs=a,b,c.")
    for name in ("export_dir", "inputs", "output"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required.")
    # A wrong --export_dir fails here, in one line, before a log file is made beside --output.
    if FLAGS.threshold is not None:
        schema.check_threshold(FLAGS.threshold, "--threshold")
    scoring.check_export(FLAGS.export_dir)
    export.load_export(FLAGS.export_dir)  # A foreign signature fails here, not on the workers.
    log_file = batch_score_lib.log_path(FLAGS.output)
    with batch_score_lib.log_to(log_file) as local_log:
        counts = batch_score_lib.run(
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
            media_options=media.MediaOptions.from_flags(FLAGS, chunk_frames=FLAGS.chunk_frames),
            follow_outside_links=FLAGS.follow_outside_links,
            worker_log=local_log,
        )
    print(
        json.dumps({"output": f"{FLAGS.output}-*.jsonl", "log": log_file, **counts}, sort_keys=True)
    )


def run_main():
    define_flags()
    cli.run(main, module=sys.modules[__name__], prog="dfd-batch-score")


if __name__ == "__main__":
    run_main()
