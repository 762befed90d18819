"""Chooses the Beam runner on purpose, and says which one ran.

Beam's `DirectRunner` first tries the Prism runner, which downloads a Go binary
at run time; offline, that fails and Beam falls back after a delay and a logged
error (see docs/architecture.md#pitfalls). For a local batch build we therefore pick the
FnApiRunner ourselves, in `multi_processing` mode with one worker process per
core, which is also the fastest local choice for CPU-bound image decoding.
Any other runner (DataflowRunner, FlinkRunner, SparkRunner, PrismRunner,
DirectRunner) is passed to Beam by name with the user's pipeline options.

The local runner's worker processes are started through
`preprocessing.building.beam_worker`, so they end when the job's main process ends (even
by SIGKILL) and can send their own console noise to the tool's log file.
"""

from __future__ import annotations

import os
import sys

from absl import logging

LOCAL = "local"
RUNNING_MODES = ("multi_processing", "multi_threading", "in_memory")


def default_num_workers() -> int:
    """Cores this process may use (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Not on Linux.
        return max(1, os.cpu_count() or 1)


def _owned_workers_runner(worker_log: str | None):
    """An FnApiRunner whose multi-processing workers are started by `building.beam_worker`.

    FnApiRunner writes its worker command (`<python> -m
    apache_beam.runners.worker.sdk_worker_main`) into the pipeline's environment
    proto; this subclass swaps that command, and only that one, before running.
    """
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from preprocessing.building import beam_worker

    class OwnedWorkersFnApiRunner(FnApiRunner):
        """FnApiRunner whose worker processes end with the process that runs it."""

        def run_via_runner_api(self, pipeline_proto, options):
            beams_own = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"
            ours = beam_worker.command(worker_log).encode()
            for environment in pipeline_proto.components.environments.values():
                if (
                    environment.urn == python_urns.SUBPROCESS_SDK
                    and environment.payload.decode(errors="replace") == beams_own
                ):
                    environment.payload = ours
            return super().run_via_runner_api(pipeline_proto, options)

    return OwnedWorkersFnApiRunner()


def local_runner(
    num_workers: int | None = None,
    running_mode: str = "multi_processing",
    options=None,
    worker_log: str | None = None,
):
    """The local FnApiRunner and its options.

    Args:
        num_workers: worker processes (or threads); default: every core.
        running_mode: one of RUNNING_MODES; "in_memory" runs in this process
            (fastest start, for tests and tiny builds).
        options: Beam PipelineOptions to extend (they are modified); default: new ones.
        worker_log: a local file that worker processes append their stderr to;
            None: they share this process' stderr.

    Returns:
        (runner, PipelineOptions) to hand to TFDS' DownloadConfig.

    Raises:
        ValueError: unknown running_mode or num_workers < 1.
    """
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, WorkerOptions

    if running_mode not in RUNNING_MODES:
        raise ValueError(f"running_mode={running_mode!r} is not one of {list(RUNNING_MODES)}.")
    num_workers = default_num_workers() if num_workers is None else int(num_workers)
    if num_workers < 1:
        raise ValueError(f"num_workers={num_workers} must be at least 1.")
    if running_mode == "in_memory":
        num_workers = 1
    options = options if options is not None else PipelineOptions([])
    harness = options.view_as(WorkerOptions)
    if running_mode == "multi_processing" and not harness.default_sdk_harness_log_level:
        # Worker processes otherwise relay every INFO line of their own.
        harness.default_sdk_harness_log_level = "WARNING"
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = num_workers
    direct.direct_running_mode = running_mode
    logging.info(
        "Beam runner: FnApiRunner (local, %s, %d worker%s).",
        running_mode,
        num_workers,
        "s" if num_workers > 1 else "",
    )
    return _owned_workers_runner(worker_log), options


def named_runner(runner: str, pipeline_options: list[str] | None = None):
    """(None, PipelineOptions with --runner=<runner>) for any runner Beam knows by name.

    Raises:
        ValueError: naming the runner and the accepted names.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    known = list(StandardOptions.KNOWN_RUNNER_NAMES)
    if runner not in known:
        raise ValueError(f"--runner={runner!r} is not '{LOCAL}' or one of Beam's runners {known}.")
    options = PipelineOptions([f"--runner={runner}"] + list(pipeline_options or []))
    logging.info("Beam runner: %s (options: %s).", runner, " ".join(pipeline_options or []) or "-")
    return None, options


def has_runner(options) -> bool:
    """Whether Beam options name a runner explicitly."""
    from apache_beam.options.pipeline_options import StandardOptions

    return bool(options is not None and options.view_as(StandardOptions).runner)
