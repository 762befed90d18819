r"""Builds the `real_and_fake_faces` TFDS dataset from a folder of face images.

    dfd-build-dataset --manual_dir=<Kaggle zip, its folder, or a <split>/{real,fake}/ tree> \
        --data_dir=<output root>                     # local Beam runner, every core
    python -m tfds_builder.build ...                 # the same, without installing

    dfd-build-dataset --manual_dir=gs://b/raw --data_dir=gs://b/tfds \
        --runner=DataflowRunner \
        --beam_pipeline_options=project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py

Writes `<data_dir>/real_and_fake_faces/<config>/<version>/` (config
`keep_duplicates`, or `drop_duplicates` with --duplicates=drop): TFRecord shards
per split, dataset_info.json, rejects.jsonl, build_summary.json and the input
record; prints the summary table (per split and label: read, written, rejected,
duplicates, converted). The build happens beside any existing version, which
stays readable until the new one is complete. An existing version built from the
same inputs and options is reused; one built from others is refused, naming the
difference, unless --overwrite. Fails, naming the likely cause, when more than
--max_reject_fraction of the inputs are rejected.

The console shows this tool's own lines; the full log (Beam, TFDS, TensorFlow,
worker processes) goes to `<data_dir>/real_and_fake_faces/<config>/logs/`, or
to the console too with --verbosity=1.

The launcher lives in tfds_builder/ because it imports the builder: imports
point from here down to preprocessing/, never up.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up lines go to the build log, not the console (see tool_logging).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from preprocessing import tool_logging  # noqa: E402  (pure Python: before TensorFlow)

with tool_logging.capture_native_stderr() as _IMPORT_STDERR:
    import dataclasses  # noqa: E402
    import json  # noqa: E402
    import sys  # noqa: E402

    from absl import flags, logging  # noqa: E402
    import tensorflow as tf  # noqa: E402

    from preprocessing import cli, paths, schema
    from preprocessing.building import archive, dataset_dirs, runners
    from preprocessing.building import summary as summary_lib
    from preprocessing.media import images
    from preprocessing.real_and_fake_faces import sources
    from tfds_builder import beam_builder, launcher  # noqa: E402
    from tfds_builder.real_and_fake_faces import (  # noqa: E402
        real_and_fake_faces_dataset_builder as rff,
    )

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything one build needs; `main` makes it from flags, tests directly."""

    manual_dir: str
    data_dir: str
    runner: str = runners.LOCAL
    num_workers: int = 0  # 0: every core.
    running_mode: str = "multi_processing"
    beam_pipeline_options: tuple[str, ...] = ()
    target_shard_size_mb: float = 0.0  # 0: TFDS' automatic sharding.
    max_reject_fraction: float | None = beam_builder.DEFAULT_MAX_REJECT_FRACTION
    duplicates: str = "keep"
    overwrite: bool = False
    allow_links_outside_input: bool = False
    max_extract_gb: float = archive.DEFAULT_MAX_EXTRACT_GB
    max_file_bytes: int = images.DEFAULT_MAX_FILE_BYTES

    def validate(self) -> None:
        """Raises ValueError naming the bad value and what is accepted."""
        launcher.validate_common(
            manual_dir=self.manual_dir,
            data_dir=self.data_dir,
            max_reject_fraction=self.max_reject_fraction,
            num_workers=self.num_workers,
            running_mode=self.running_mode,
        )
        if self.duplicates not in rff.CONFIGS:
            raise ValueError(f"--duplicates={self.duplicates!r} is not 'keep' or 'drop'.")
        if self.target_shard_size_mb < 0:
            raise ValueError(f"--target_shard_size_mb={self.target_shard_size_mb} is negative.")
        if self.max_extract_gb <= 0:
            raise ValueError(f"--max_extract_gb={self.max_extract_gb} must be positive.")
        if self.max_file_bytes < 1:
            raise ValueError(f"--max_file_bytes={self.max_file_bytes} must be >= 1.")


def _estimate_num_shards(source_files, target_bytes: float) -> int:
    """Shard count so that the largest split's shards are about `target_bytes`.

    TFDS 4.9.10 ignores DownloadConfig's min/max_shard_size (its ShardConfig reads
    the class defaults), so the target is turned into `num_shards`, which TFDS
    applies to every split: the count is capped so that the smallest split
    still has at least two examples per shard. Sizes come from the listing when
    it has them, else from at most 64 files spread over the inputs.
    """
    readable = [s for s in source_files if not s.problem]
    if not readable:
        return 1
    sized = [s.size for s in readable if s.size >= 0]
    if len(sized) == len(readable):
        mean_size = sum(sized) / len(sized)
    else:
        step = max(1, len(readable) // 64)
        sample = readable[::step][:64]
        mean_size = sum(tf.io.gfile.stat(s.path).length for s in sample) / len(sample)
    per_split = {split: sum(s.split == split for s in readable) for split in schema.SPLITS}
    per_split = {k: v for k, v in per_split.items() if v}
    wanted = round(max(per_split.values()) * mean_size / target_bytes)
    return int(max(1, min(wanted, min(per_split.values()) // 2)))


def _num_shards(config: BuildConfig, layout: sources.Layout) -> int | None:
    """--target_shard_size_mb as a shard count; None (TFDS decides) without it or for a zip."""
    if not config.target_shard_size_mb or layout.image_root is None:
        return None
    num_shards = _estimate_num_shards(
        sources.list_sources(layout, allow_links_outside=config.allow_links_outside_input),
        config.target_shard_size_mb * (1 << 20),
    )
    logging.info(
        "--target_shard_size_mb=%s: %d shards per split.",
        config.target_shard_size_mb,
        num_shards,
    )
    return num_shards


def make_builder(config: BuildConfig, *, worker_log: str | None = None) -> rff.Builder:
    """The builder for `config` (cheap: nothing is read or written)."""
    return rff.Builder(
        data_dir=config.data_dir,
        config=rff.config_name(config.duplicates),
        max_reject_fraction=config.max_reject_fraction,
        reject_limit_flag="--max_reject_fraction",
        allow_links_outside_input=config.allow_links_outside_input,
        max_extract_gb=config.max_extract_gb,
        max_file_bytes=config.max_file_bytes,
        worker_log=worker_log,
    )


def log_path(config: BuildConfig) -> str:
    """`<data_dir>/real_and_fake_faces/<config>/logs/build-<UTC time>-<pid>.log`."""
    return launcher.log_path(
        config.data_dir, schema.DATASET_NAME, rff.config_name(config.duplicates)
    )


def run(config: BuildConfig, *, beam_runner=None, beam_options=None, worker_log=None) -> dict:
    """Builds (or reuses) the dataset; returns what happened.

    Args:
        config: what to build, see BuildConfig.
        beam_runner, beam_options: injected by tests (e.g. an in-process
            FnApiRunner); by default chosen from `config`.
        worker_log: local file for the Beam worker processes' stderr.

    Returns:
        {"dataset_dir", "summary", "runner", "action" ("built", "reused",
        "reused_unrecorded"), "leftovers" (messages), "extraction" (or None)}.

    Raises:
        ValueError, FileNotFoundError: bad flags or inputs, naming them
            (fingerprint.InputsChangedError: the dataset was built from other inputs).
        PermissionError: data_dir is not writable.
        summary_lib.RejectFractionExceededError: too many rejects; says why.
        dataset_dirs.BuildInProgressError: another build writes the same config.
    """
    config.validate()
    tool_logging.details().info(
        "Build config: %s", json.dumps(dataclasses.asdict(config), sort_keys=True)
    )
    # Fail in seconds, before any Beam work, on a wrong --manual_dir or a read-only --data_dir.
    layout = sources.find_layout(config.manual_dir)
    paths.ensure_writable(config.data_dir)
    runner_name = "FnApiRunner" if config.runner == runners.LOCAL else config.runner
    if beam_runner is None and beam_options is None:
        beam_runner, beam_options, runner_name = launcher.runner_and_options(
            config.runner, config.num_workers, config.running_mode, config.beam_pipeline_options
        )
    num_shards = _num_shards(config, layout)
    outcome, summary = launcher.prepare(
        make_builder(config, worker_log=worker_log),
        manual_dir=config.manual_dir,
        beam_runner=beam_runner,
        beam_options=beam_options,
        overwrite=config.overwrite,
        num_shards=num_shards,
    )
    return {
        "dataset_dir": outcome.dataset_dir,
        "summary": summary,
        "runner": runner_name,
        "action": outcome.action,
        "leftovers": list(outcome.leftovers),
        "extraction": outcome.extraction,
    }


def define_flags() -> None:
    """Defines the launcher's flags; called by `run_main`, so importing defines none."""
    launcher.define_common_flags(
        inputs_help="Input: the Kaggle '140k Real and Fake Faces' zip, the folder holding it, its "
        "extracted folder, or a <split>/{real,fake}/ tree; local or gs://.",
        data_dir_help="Output TFDS data_dir (local or gs://); the dataset lands in "
        "<data_dir>/real_and_fake_faces/<config>/<version>/.",
        reject_help="Fail when a larger fraction of the inputs is rejected as bad input "
        "(deliberate duplicate drops excluded).",
    )
    flags.adopt_module_key_flags(launcher)  # --help lists them as this tool's own.
    flags.DEFINE_float(
        "target_shard_size_mb",
        0,
        "Aim for TFRecord shards of about this size "
        "in the largest split; 0: TFDS' automatic sharding.",
    )
    flags.DEFINE_enum(
        "duplicates",
        "keep",
        ["keep", "drop"],
        "Byte-identical images found in two splits: keep them (reported; config "
        "keep_duplicates), or drop the copies in later splits, train < validation < test "
        "(config drop_duplicates). Each config has its own folder.",
    )
    flags.DEFINE_float(
        "max_extract_gb",
        archive.DEFAULT_MAX_EXTRACT_GB,
        "A zip input may expand to at most this many GB (about 4x the 140k download); "
        "a larger one is refused before extraction.",
    )
    flags.DEFINE_integer(
        "max_file_bytes",
        images.DEFAULT_MAX_FILE_BYTES,
        "An input file larger than this is rejected (file_too_large) from its size, unread: "
        "no real face image comes near the default (100 MiB).",
    )


def _print_result(result: dict, log_file: str) -> None:
    if result["action"] == "built":
        print(f"Dataset: {result['dataset_dir']} (built; Beam runner: {result['runner']})")
    else:
        print(f"Dataset: {result['dataset_dir']} (reused: built earlier from the same inputs)")
    extraction = result["extraction"]
    if extraction is not None:
        print(
            f"Extracted copy of the zip: {extraction.folder} ({extraction.files} files, "
            f"{archive.format_size(extraction.bytes)}); kept for rebuilds, safe to delete."
        )
    print(f"Log: {log_file}")
    if result["summary"]:
        print(summary_lib.format_table(result["summary"]))


def main(argv):
    config = BuildConfig(
        manual_dir=FLAGS.manual_dir,
        data_dir=FLAGS.data_dir,
        runner=FLAGS.runner,
        num_workers=FLAGS.num_workers,
        running_mode=FLAGS.running_mode,
        beam_pipeline_options=tuple(FLAGS.beam_pipeline_options) + tuple(argv[1:]),
        target_shard_size_mb=FLAGS.target_shard_size_mb,
        max_reject_fraction=FLAGS.max_reject_fraction,
        duplicates=FLAGS.duplicates,
        overwrite=FLAGS.overwrite,
        allow_links_outside_input=FLAGS.allow_links_outside_input,
        max_extract_gb=FLAGS.max_extract_gb,
        max_file_bytes=FLAGS.max_file_bytes,
    )
    # Wrong paths fail here, before a log folder is made in --data_dir.
    config.validate()
    sources.find_layout(config.manual_dir)
    paths.ensure_writable(config.data_dir)
    log_file = log_path(config)
    with launcher.logged(log_file, _IMPORT_STDERR) as local_log:
        result = run(config, worker_log=local_log)
    _print_result(result, log_file)


def run_main():
    define_flags()
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-build-dataset",
        extra_user_errors=(
            summary_lib.RejectFractionExceededError,
            summary_lib.EmptySplitError,
            dataset_dirs.BuildInProgressError,
        ),
    )


if __name__ == "__main__":
    run_main()
