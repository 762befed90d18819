"""What the two dataset launchers share: runner choice, the build call, the log, common flags.

`tfds_builder.build` (face images -> `real_and_fake_faces`) and
`tfds_builder.build_videos` (videos -> `video_faces`) differ in their inputs,
their configuration and their summary; everything around the TFDS builder is
the same and lives here once:

- Beam options as users type them (`project=P` or `--project=P`), and the runner:
  for `--runner=local` none is made here, the builder makes Beam's FnApiRunner
  when it has something to build (a reused dataset starts no Beam), see
  `tfds_builder.beam_builder`; any other name goes to Beam as is.
- `prepare`: one `download_and_prepare` call, reusing a dataset built from the
  same inputs and options unless `--overwrite`, and the summary it wrote.
- `logged`: the console gets the project's own lines, the full log (Beam, TFDS,
  TensorFlow, worker processes) goes to a file in the output folder.
- `define_common_flags`: the flags both launchers take, defined by each
  launcher's `define_flags` (they become that tool's key flags for `--help`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os

from absl import flags, logging
import tensorflow as tf
import tensorflow_datasets as tfds

import preprocessing
from preprocessing import paths, tool_logging
from preprocessing.building import runners
from preprocessing.building import summary as summary_lib
import tfds_builder
from tfds_builder import beam_builder

# Where the project's own log lines come from (the console shows them; the rest goes to the log).
PROJECT_DIRS = tuple(
    os.path.dirname(os.path.abspath(package.__file__)) for package in (preprocessing, tfds_builder)
)


def beam_flags(options: list[str] | tuple[str, ...]) -> list[str]:
    """["project=p", "--region=r"] -> ["--project=p", "--region=r"] (tfds build's spelling too)."""
    return [
        option if option.startswith("--") else f"--{option}"
        for option in (o.strip() for o in options)
        if option
    ]


def validate_common(
    *,
    manual_dir: str,
    data_dir: str,
    max_reject_fraction: float | None,
    num_workers: int,
    running_mode: str,
) -> None:
    """Raises ValueError naming a bad value of the flags both launchers take."""
    if not manual_dir or not data_dir:
        raise ValueError("--manual_dir and --data_dir are both required.")
    if max_reject_fraction is not None and not 0 <= max_reject_fraction <= 1:
        raise ValueError(f"--max_reject_fraction={max_reject_fraction} is not in [0, 1].")
    if num_workers < 0:
        raise ValueError(f"--num_workers={num_workers} is negative (0 means every core).")
    if running_mode not in runners.RUNNING_MODES:
        raise ValueError(
            f"--running_mode={running_mode!r} is not one of {list(runners.RUNNING_MODES)}."
        )
    for name, value in (("manual_dir", manual_dir), ("data_dir", data_dir)):
        if paths.looks_like_gcs_typo(value):
            raise ValueError(
                f"--{name}={value} is not a valid Cloud Storage URL: write gs://BUCKET/PATH."
            )


def runner_and_options(
    runner: str, num_workers: int, running_mode: str, pipeline_options
) -> tuple[object, object, str]:
    """(beam_runner or None, beam_options, the runner's name for the summary line)."""
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

    extra = beam_flags(pipeline_options)
    if runner != runners.LOCAL:
        beam_runner, beam_options = runners.named_runner(runner, extra)
        return beam_runner, beam_options, runner
    local = [f"--direct_running_mode={running_mode}"]
    if num_workers:
        local.append(f"--direct_num_workers={num_workers}")
    return None, PipelineOptions(extra + local), "FnApiRunner"


def prepare(
    builder,
    *,
    manual_dir: str,
    beam_runner,
    beam_options,
    overwrite: bool,
    num_shards: int | None = None,
) -> tuple[object, dict | None]:
    """Builds (or reuses) `builder`'s dataset; returns (builder.outcome, its summary or None)."""
    mode = (
        tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
        if overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir,
            beam_runner=beam_runner,
            beam_options=beam_options,
            num_shards=num_shards,
            download_mode=mode,
        )
    )
    outcome = builder.outcome
    summary_path = paths.join(outcome.dataset_dir, summary_lib.SUMMARY_FILENAME)
    summary = None
    if tf.io.gfile.exists(summary_path):
        with tf.io.gfile.GFile(summary_path) as f:
            summary = json.load(f)
    return outcome, summary


def log_path(data_dir: str, dataset: str, config: str) -> str:
    """`<data_dir>/<dataset>/<config>/logs/build-<UTC time>-<pid>.log`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return paths.join(data_dir, dataset, config, "logs", f"build-{stamp}-{os.getpid()}.log")


@contextlib.contextmanager
def logged(log_file: str, import_stderr: list[str]):
    """The console/log split around a build; yields the local log file for Beam workers.

    A failure leaves its traceback in the log; the console gets one line from
    `preprocessing.cli`.
    """
    logging.info("Full log: %s", log_file)
    tfds.disable_progress_bar()
    with tool_logging.log_to_file(
        log_file,
        project_dirs=PROJECT_DIRS,
        verbose=logging.get_verbosity() >= 1,
        preamble="".join(import_stderr),
    ) as local_log:
        try:
            yield local_log
        except BaseException:
            tool_logging.details().exception("The build failed.")
            raise


def define_common_flags(*, inputs_help: str, data_dir_help: str, reject_help: str) -> None:
    """Defines the flags both launchers take; call from the launcher's own `define_flags`."""
    flags.DEFINE_string("manual_dir", None, inputs_help)
    flags.DEFINE_string("data_dir", None, data_dir_help)
    flags.DEFINE_string(
        "runner",
        runners.LOCAL,
        "'local': Beam's FnApiRunner on this machine (see --num_workers, --running_mode); or a "
        "Beam runner name such as DataflowRunner, FlinkRunner, SparkRunner, PrismRunner, "
        "DirectRunner.",
    )
    flags.DEFINE_integer("num_workers", 0, "Local worker processes; 0: every core.")
    flags.DEFINE_enum(
        "running_mode",
        "multi_processing",
        list(runners.RUNNING_MODES),
        "Local runner mode; in_memory runs in this process (tiny builds).",
    )
    flags.DEFINE_list(
        "beam_pipeline_options",
        [],
        "Comma-separated Beam options passed through, e.g. "
        "project=P,region=R,temp_location=gs://b/tmp (arguments after `--` are passed through "
        "too).",
    )
    flags.DEFINE_float("max_reject_fraction", beam_builder.DEFAULT_MAX_REJECT_FRACTION, reject_help)
    flags.DEFINE_bool(
        "overwrite",
        False,
        "Rebuild even when this version exists; the existing one stays readable until the new "
        "one is complete.",
    )
    flags.DEFINE_bool(
        "allow_links_outside_input",
        False,
        "Follow symbolic links that lead out of --manual_dir (rejected by default).",
    )
