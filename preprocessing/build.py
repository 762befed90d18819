"""Builds the `real_and_fake_faces` TFDS dataset from a folder of face images.

    python -m preprocessing.build --manual_dir=<Kaggle download or <split>/{real,fake}/ tree> \
        --data_dir=<output root>                     # local Beam runner, every core

    python -m preprocessing.build --manual_dir=gs://b/raw --data_dir=gs://b/tfds \
        --runner=DataflowRunner \
        --beam_pipeline_options=project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py

Writes `<data_dir>/real_and_fake_faces/1.0.0/`: TFRecord shards per split,
dataset_info.json, rejects.jsonl and build_summary.json; prints the summary
table (per split and label: read, written, rejected, duplicates, converted).
Fails, naming the likely cause, when more than --max_reject_fraction of the
inputs are rejected.

This launcher is the one module of `preprocessing/` that reaches up to
`tfds_builder/` (lazily, in `run`): its whole job is to run that builder.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from absl import flags, logging
import tensorflow as tf

from preprocessing import cli, paths, report, runners, schema

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
    max_reject_fraction: float | None = 0.05
    duplicates: str = "keep"
    overwrite: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the bad value and what is accepted."""
        if not self.manual_dir or not self.data_dir:
            raise ValueError("--manual_dir and --data_dir are both required.")
        if self.duplicates not in ("keep", "drop"):
            raise ValueError(f"--duplicates={self.duplicates!r} is not 'keep' or 'drop'.")
        if self.max_reject_fraction is not None and not 0 <= self.max_reject_fraction <= 1:
            raise ValueError(f"--max_reject_fraction={self.max_reject_fraction} is not in [0, 1].")
        if self.target_shard_size_mb < 0:
            raise ValueError(f"--target_shard_size_mb={self.target_shard_size_mb} is negative.")
        if self.num_workers < 0:
            raise ValueError(f"--num_workers={self.num_workers} is negative (0 means every core).")
        if self.running_mode not in runners.RUNNING_MODES:
            raise ValueError(
                f"--running_mode={self.running_mode!r} is not one of {list(runners.RUNNING_MODES)}."
            )


def beam_flags(options: list[str] | tuple[str, ...]) -> list[str]:
    """["project=p", "--region=r"] -> ["--project=p", "--region=r"] (tfds build's spelling too)."""
    return [
        option if option.startswith("--") else f"--{option}"
        for option in (o.strip() for o in options)
        if option
    ]


def _estimate_num_shards(source_files, target_bytes: float) -> int:
    """Shard count so that the largest split's shards are about `target_bytes`.

    TFDS 4.9.10 ignores DownloadConfig's min/max_shard_size (its ShardConfig reads
    the class defaults), so the target is turned into `num_shards`, which TFDS
    applies to every split: the count is capped so that the smallest split
    still has at least two examples per shard. Sizes come from at most 64 files
    spread over the inputs: cheap on gs://, close enough for shard sizing.
    """
    readable = [s for s in source_files if not s.problem]
    if not readable:
        return 1
    step = max(1, len(readable) // 64)
    sample = readable[::step][:64]
    mean_size = sum(tf.io.gfile.stat(s.path).length for s in sample) / len(sample)
    per_split = {split: sum(s.split == split for s in readable) for split in schema.SPLITS}
    per_split = {k: v for k, v in per_split.items() if v}
    wanted = round(max(per_split.values()) * mean_size / target_bytes)
    return int(max(1, min(wanted, min(per_split.values()) // 2)))


def run(config: BuildConfig, *, beam_runner=None, beam_options=None) -> dict:
    """Builds the dataset; returns {"dataset_dir", "summary", "runner"}.

    Args:
        config: what to build, see BuildConfig.
        beam_runner, beam_options: injected by tests (e.g. an in-process
            FnApiRunner); by default chosen from `config`.

    Raises:
        ValueError, FileNotFoundError: bad flags or inputs, naming them.
        PermissionError: data_dir is not writable.
        report.RejectFractionExceededError: too many rejects; says why.
    """
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    # The launcher's job is to run the builder: the one upward import of preprocessing/.
    from preprocessing import sources  # pylint: disable=import-outside-toplevel
    from tfds_builder.real_and_fake_faces import real_and_fake_faces_dataset_builder as rff  # pylint: disable=import-outside-toplevel

    config.validate()
    logging.info("Build config: %s", json.dumps(dataclasses.asdict(config), sort_keys=True))
    # Fail in seconds, before any Beam work, on a wrong --manual_dir or a read-only --data_dir.
    layout = sources.find_layout(config.manual_dir)
    paths.ensure_writable(config.data_dir)
    extra = beam_flags(config.beam_pipeline_options)
    if beam_runner is None and beam_options is None:
        if config.runner == runners.LOCAL:
            from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

            beam_runner, beam_options = runners.local_runner(
                num_workers=config.num_workers or None,
                running_mode=config.running_mode,
                options=PipelineOptions(extra),
            )
        else:
            beam_runner, beam_options = runners.named_runner(config.runner, extra)
    runner_name = type(beam_runner).__name__ if beam_runner is not None else config.runner

    num_shards = None
    if config.target_shard_size_mb and layout.image_root is not None:
        num_shards = _estimate_num_shards(
            sources.list_sources(layout), config.target_shard_size_mb * (1 << 20)
        )
        logging.info(
            "--target_shard_size_mb=%s: %d shards per split.",
            config.target_shard_size_mb,
            num_shards,
        )

    builder = rff.Builder(
        data_dir=config.data_dir,
        duplicates=config.duplicates,
        max_reject_fraction=config.max_reject_fraction,
    )
    mode = (
        tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
        if config.overwrite
        else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    )
    download_config = tfds.download.DownloadConfig(
        manual_dir=config.manual_dir,
        beam_runner=beam_runner,
        beam_options=beam_options,
        num_shards=num_shards,
        download_mode=mode,
    )
    if (
        tf.io.gfile.exists(paths.join(builder.data_dir, "dataset_info.json"))
        and not config.overwrite
    ):
        logging.warning(
            "%s is already built; reusing it (pass --overwrite to rebuild).", builder.data_dir
        )
    builder.download_and_prepare(download_config=download_config)
    summary_path = paths.join(builder.data_dir, report.SUMMARY_FILENAME)
    summary = None
    if tf.io.gfile.exists(summary_path):
        with tf.io.gfile.GFile(summary_path) as f:
            summary = json.load(f)
    return {"dataset_dir": builder.data_dir, "summary": summary, "runner": runner_name}


def define_flags() -> None:
    """Defines the launcher's flags; called by `run_main`, so importing defines none."""
    flags.DEFINE_string(
        "manual_dir",
        None,
        "Input: the extracted Kaggle '140k Real and Fake "
        "Faces' folder, its zip's folder, or a <split>/{real,fake}/ tree; "
        "local or gs://.",
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "Output TFDS data_dir (local or gs://); the dataset "
        "lands in <data_dir>/real_and_fake_faces/<version>/.",
    )
    flags.DEFINE_string(
        "runner",
        runners.LOCAL,
        "'local': Beam's FnApiRunner on this machine "
        "(see --num_workers, --running_mode); or a Beam runner name such as "
        "DataflowRunner, FlinkRunner, SparkRunner, PrismRunner, DirectRunner.",
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
        "Comma-separated Beam options passed "
        "through, e.g. project=P,region=R,temp_location=gs://b/tmp "
        "(arguments after `--` are passed through too).",
    )
    flags.DEFINE_float(
        "target_shard_size_mb",
        0,
        "Aim for TFRecord shards of about this size "
        "in the largest split; 0: TFDS' automatic sharding.",
    )
    flags.DEFINE_float(
        "max_reject_fraction",
        0.05,
        "Fail when a larger fraction of the inputs "
        "is rejected as bad input (deliberate duplicate drops excluded).",
    )
    flags.DEFINE_enum(
        "duplicates",
        "keep",
        ["keep", "drop"],
        "Byte-identical images found in "
        "two splits: keep them (reported), or drop the copies in later splits "
        "(train < validation < test).",
    )
    flags.DEFINE_bool("overwrite", False, "Rebuild even when the dataset version exists.")


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
    )
    result = run(config)
    print(f"Dataset: {result['dataset_dir']} (Beam runner: {result['runner']})")
    if result["summary"]:
        print(report.format_table(result["summary"]))


def run_main():
    define_flags()
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-build-dataset",
        extra_user_errors=(report.RejectFractionExceededError,),
    )


if __name__ == "__main__":
    run_main()
