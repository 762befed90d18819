"""The work behind `dfd-batch-score` (trainer/batch_score.py): scoring as a Beam job.

The same stages as `dfd-predict` (`trainer.inference.media`), the same reading
rules and the same records, as Beam steps:

    ExpandInputs -> Inspect (an image: decode, find and crop faces; a video:
    probe and cut its sampling plan into chunks) -> [video chunks: Reshuffle ->
    DecodeChunks (decode, find and crop faces)] -> RunInference (face crops as
    JPEG, batched, one SavedModel per worker) -> JoinByInput -> Assemble ->
    one JSON line per input.

A video fans out into chunks of sampled frames that any worker can take, so
one long video does not hold one worker. The local runner is chosen on purpose
(`preprocessing.building.runners`); a job that fails removes the `beam-temp-*`
folder its output writer left. `log_to` keeps the console for the tool's own
lines; Beam's, TensorFlow's and the workers' go to `<output>.log`
(`preprocessing.tool_logging`, as for the dataset builds).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import contextlib
import json
import os
import sys
from typing import Any

from absl import logging

# TensorFlow is imported already, quietly (trainer/batch_score.py imports it first). Beam
# warns at import, through the root logger ("apitools not found ..."), before any log file
# exists: that goes to the log file too, kept until then, so `--help` and every run start
# with this tool's own lines.
from preprocessing import schema, tf_startup, tool_logging

with (
    tool_logging.capture_native_stderr()
    if tf_startup.verbosity_in_argv(sys.argv) <= 0
    else contextlib.nullcontext([])
) as _IMPORT_STDERR:
    import apache_beam as beam
    from apache_beam.ml.inference import base as inference

import preprocessing
from preprocessing.building import runners
from preprocessing.media import faces as faces_lib  # noqa: E402
import trainer
from trainer import export  # noqa: E402
from trainer.inference import media, scoring

METRICS_NAMESPACE = "dfd_batch_score"
PARTS, CROPS, CHUNKS = "parts", "crops", "chunks"
# Where this tool's own log lines come from: the console shows them, the rest goes to the log.
PROJECT_DIRS = tuple(
    os.path.dirname(os.path.abspath(package.__file__)) for package in (preprocessing, trainer)
)


class ExportedDetectorHandler(inference.ModelHandler[bytes, inference.PredictionResult, Any]):
    """RunInference handler for the exported detector: JPEG bytes in, p_fake out.

    The inference of each result is `{"p_fake": float}`, or `{"error": str}` for
    an image the SavedModel's JPEG decoder rejects (`scoring.score_with_retry`:
    a batch that fails is retried one image at a time).
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
        # The loaded object owns the variables: keep it, not just its signature. Its
        # signature is checked against the contract (export.check_signature).
        return export.load_export(self._export_dir)

    def run_inference(
        self, batch: Sequence[bytes], model, inference_args=None
    ) -> Iterable[inference.PredictionResult]:
        score = scoring.serving_scorer(model.signatures[export.SIGNATURE_NAME])
        values = [
            {"p_fake": value} if value is not None else {"error": scoring.UNDECODABLE}
            for value in scoring.score_with_retry(score, batch)
        ]
        # The example is left out of the result: the key identifies it and the image
        # bytes would only weigh on the shuffle.
        return [inference.PredictionResult(None, value) for value in values]

    def batch_elements_kwargs(self):
        return dict(self._batching)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def _count(name: str) -> None:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc()


class _Expand(beam.DoFn):
    """One input pattern -> its files; what is not read goes out as a finished record."""

    def __init__(self, follow_outside_links: bool):
        self._follow = follow_outside_links

    def process(self, pattern: str):
        files, rejects = scoring.expand_inputs([pattern], self._follow)
        for reject in rejects:
            _count(f"rejected_{reject.status}")
            yield beam.pvalue.TaggedOutput("rejects", reject.to_dict())
        yield from files


class _FaceStage(beam.DoFn):
    """Holds one face detector per worker (its network loads once per process)."""

    def __init__(self, options: media.MediaOptions, crop_size: int):
        self._options = options
        self._size = crop_size
        self._detector: faces_lib.FaceDetector | None = None

    def setup(self):
        if self._options.faces != "none":
            self._detector = self._options.face_detector()

    def _emit(self, path: str, part: dict, crops):
        yield beam.pvalue.TaggedOutput(PARTS, (path, part))
        for key, jpeg in crops:
            yield beam.pvalue.TaggedOutput(CROPS, ((path, key), jpeg))


class _Inspect(_FaceStage):
    """A file -> its part record and face crops (an image), or its plan and chunks (a video)."""

    def process(self, path: str):
        try:
            if media.is_video(path, scoring.read_head(path)):
                plan, chunks = media.plan_video(path, self._options)
                yield beam.pvalue.TaggedOutput(PARTS, (path, plan))
                for times in chunks:
                    yield beam.pvalue.TaggedOutput(CHUNKS, (path, times))
                return
            data = scoring.read_bytes(path, self._options.max_file_bytes)
        except scoring.UnreadableImageError as error:
            yield from self._emit(
                path, {"kind": "", "status": error.reason, "error": str(error)}, []
            )
            return
        part, crops = media.inspect_image(data, self._options, self._detector, self._size)
        yield from self._emit(path, part, crops)


class _DecodeChunk(_FaceStage):
    """(video, sample times) -> the chunk's part record and face crops."""

    def process(self, element):
        path, times = element
        _count("video_chunks")
        detector = self._detector or self._options.face_detector()
        part, crops = media.inspect_video_chunk(path, times, self._options, detector, self._size)
        yield from self._emit(path, part, crops)


def _to_score(keyed):
    (path, key), result = keyed
    return path, (tuple(key), result.inference.get("p_fake"))


def _assemble(joined, threshold: float) -> dict:
    path, groups = joined
    prediction = media.assemble(path, groups[PARTS], dict(groups["scores"]), threshold)
    if prediction.p_fake is not None:
        _count(f"scored_{prediction.label}")
    elif prediction.status in ("no_face", "face_too_small"):
        _count(prediction.status)
    else:
        _count(f"rejected_{prediction.status}")
    return prediction.to_dict()


@beam.ptransform_fn
def ScoreMedia(  # noqa: N802  (Beam names composites like classes)
    patterns,
    export_dir: str,
    threshold: float,
    image_size: int,
    options: media.MediaOptions | None = None,
    min_batch_size: int = 1,
    max_batch_size: int = 32,
    follow_outside_links: bool = False,
):
    """Input patterns -> one record dict per matched file, rejects included."""
    options = options or media.MediaOptions()
    size = media.crop_size(image_size)
    expanded = patterns | "ExpandInputs" >> beam.ParDo(_Expand(follow_outside_links)).with_outputs(
        "rejects", main="files"
    )
    inspected = (
        expanded.files
        | "Redistribute" >> beam.Reshuffle()
        | "Inspect" >> beam.ParDo(_Inspect(options, size)).with_outputs(PARTS, CROPS, CHUNKS)
    )
    decoded = (
        inspected[CHUNKS]
        | "SpreadChunks" >> beam.Reshuffle()
        | "DecodeChunks" >> beam.ParDo(_DecodeChunk(options, size)).with_outputs(PARTS, CROPS)
    )
    handler = inference.KeyedModelHandler(
        ExportedDetectorHandler(
            export_dir, min_batch_size=min_batch_size, max_batch_size=max_batch_size
        )
    )
    scores = (
        (inspected[CROPS], decoded[CROPS])
        | "AllCrops" >> beam.Flatten()
        | "RunInference" >> inference.RunInference(handler)
        | "ScoresByInput" >> beam.Map(_to_score)
    )
    parts = (inspected[PARTS], decoded[PARTS]) | "AllParts" >> beam.Flatten()
    records = (
        {PARTS: parts, "scores": scores}
        | "JoinByInput" >> beam.CoGroupByKey()
        | "Assemble" >> beam.Map(_assemble, threshold=threshold)
    )
    return (records, expanded.rejects) | "AllResults" >> beam.Flatten()


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
    options: media.MediaOptions | None = None,
    follow_outside_links: bool = False,
):
    """Adds the scoring job to `pipeline`; returns the records PCollection (before writing).

    Args:
        threshold: overrides the one recorded in the export's detector.json.
        num_shards: output files (0 lets the runner choose).
    """
    # Fails now, in one line, not on the workers with a traceback, when it is not an export.
    metadata = scoring.check_export(export_dir)
    if threshold is not None:
        threshold = schema.check_threshold(threshold, "--threshold")
    threshold = metadata.threshold if threshold is None else threshold
    logging.info(
        "Scoring with %s at threshold %.4f (%s).",
        export_dir,
        threshold,
        metadata.threshold_source if threshold == metadata.threshold else "--threshold",
    )
    records = (
        pipeline
        | "Inputs" >> beam.Create(list(inputs))
        | "Score"
        >> ScoreMedia(
            export_dir,
            threshold,
            metadata.image_size,
            options,
            min_batch_size,
            max_batch_size,
            follow_outside_links,
        )
    )
    _ = (
        records
        | "ToJson" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
        | "WriteJsonl"
        >> beam.io.WriteToText(output, file_name_suffix=".jsonl", num_shards=num_shards)
    )
    return records


def _temp_folders(output: str) -> set[str]:
    """Beam's file sinks write under `<output folder>/beam-temp-<output name>-<uuid>/`."""
    import tensorflow as tf

    parent = os.path.dirname(output) or "."
    pattern = os.path.join(parent, f"beam-temp-{os.path.basename(output)}-*")
    try:
        return set(tf.io.gfile.glob(pattern))
    except tf.errors.OpError:
        return set()


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
    media_options: media.MediaOptions | None = None,
    follow_outside_links: bool = False,
    worker_log: str | None = None,
) -> dict:
    """Runs the job to completion; returns the counts of scored and rejected inputs.

    A job that fails removes the `beam-temp-*` folder its writer created, and logs it;
    such folders left by an earlier, killed job are named in a warning.

    Args:
        worker_log: a local file the local runner's worker processes append their
            stderr to (`log_to`'s); None: they share this process' stderr.
    """
    if not inputs:
        raise ValueError("No inputs: pass --inputs with files, folders or globs.")
    beam_runner, options = _runner(runner, num_workers, running_mode, pipeline_options, worker_log)
    leftovers = _temp_folders(output)
    if leftovers:
        logging.warning(
            "Left by an earlier job that did not finish (remove them once no job writes to %s): %s",
            output,
            sorted(leftovers),
        )
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
        options=media_options,
        follow_outside_links=follow_outside_links,
    )
    counts = _counts(_run_to_completion(pipeline, output, leftovers))
    logging.info("Batch scoring done: %s", counts)
    return counts


def _runner(
    runner: str,
    num_workers: int | None,
    running_mode: str,
    pipeline_options: Sequence[str],
    worker_log: str | None,
):
    """(Beam runner, pipeline options): the local runner, or a named one with its options."""
    if runner == runners.LOCAL:
        beam_runner, options = runners.local_runner(
            num_workers, running_mode, worker_log=worker_log
        )
        if pipeline_options:
            logging.warning(
                "Ignoring --beam_pipeline_options with the local runner: %s", pipeline_options
            )
        return beam_runner, options
    # "project=P" and "--project=P" both work, as with `dfd-build-dataset` and `tfds build`.
    options_list = [
        o if o.startswith("--") else f"--{o}" for o in (o.strip() for o in pipeline_options) if o
    ]
    return runners.named_runner(runner, options_list)


def _run_to_completion(pipeline: beam.Pipeline, output: str, leftovers: set[str]):
    """Runs the job and waits; a failed job's new `beam-temp-*` folders are removed first."""
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException:
        import tensorflow as tf

        for folder in sorted(_temp_folders(output) - leftovers):
            tf.io.gfile.rmtree(folder)
            logging.error("The job failed: removed its unfinished output %s", folder)
        raise
    return result


def _counts(result) -> dict[str, int]:
    """{counter name: committed value} of this tool's Beam counters (`METRICS_NAMESPACE`)."""
    counts = {}
    for counter in result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE)
    )["counters"]:
        counts[counter.key.metric.name] = counts.get(counter.key.metric.name, 0) + counter.committed
    return counts


def log_path(output: str) -> str:
    """`<output>.log`, beside the `<output>-NNNNN-of-NNNNN.jsonl` files (a local path made
    absolute, so the line that names it can be pasted anywhere)."""
    return (output if "://" in output else os.path.abspath(output)) + ".log"


@contextlib.contextmanager
def log_to(log_file: str):
    """The console/log split around a job; yields the local log file for the Beam workers.

    The log describes the run that wrote the output beside it: a new run replaces it.
    A failure leaves its traceback in the log; the console gets one line from
    `preprocessing.cli`.
    """
    import tensorflow as tf

    logging.info("Full log (Beam, TensorFlow, worker processes): %s", log_file)
    if tf.io.gfile.exists(log_file):
        tf.io.gfile.remove(log_file)
    with tool_logging.log_to_file(
        log_file,
        project_dirs=PROJECT_DIRS,
        verbose=logging.get_verbosity() >= 1,
        preamble=tf_startup.startup_notes() + "".join(_IMPORT_STDERR),
    ) as local_log:
        try:
            yield local_log
        except BaseException:
            tool_logging.details().exception("The job failed.")
            raise
