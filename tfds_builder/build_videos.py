r"""Builds the `video_faces` TFDS dataset from a folder of videos: face crops of sampled frames.

    dfd-build-video-dataset --manual_dir=<videos> --data_dir=<output root>   # local Beam runner
    python -m tfds_builder.build_videos ...                                 # the same

    dfd-build-video-dataset --manual_dir=gs://b/ffpp --data_dir=gs://b/tfds \
        --runner=DataflowRunner \
        --beam_pipeline_options=project=P,region=R,temp_location=gs://b/tmp,setup_file=./setup.py

`--manual_dir` holds a `<split>/{real,fake}/**/<video>` tree, FaceForensics++ or
Celeb-DF (`--layout=auto` tells them apart; see `preprocessing.video_faces.sources`).
Writes `<data_dir>/video_faces/<layout>/1.0.0/`: TFRecord shards per split (one
example per face crop), dataset_info.json, rejects.jsonl (every video not
written, and why), build_summary.json, face_crops.png (a few videos' crops per
split, to look at) and the input record; prints the summary
table (per split and label: videos read, written, rejected, duplicates, frames,
faces, tracks). Train on it with `dfd-train --dataset=video_faces/<layout>`.

The same flags run on this machine's cores and on Dataflow: the heavy step
(decode + detect) runs per chunk of frames, on any worker. Staged builds,
reuse only for the same inputs and options, the reject-rate check and the
console/log split are every build's (`tfds_builder.beam_builder`,
`preprocessing.tool_logging`). This module does not import the image launcher:
that would register the `real_and_fake_faces` builder in every process that
builds videos.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from preprocessing import tool_logging  # noqa: E402  (pure Python: before TensorFlow)

with tool_logging.capture_native_stderr() as _IMPORT_STDERR:
    import dataclasses  # noqa: E402
    import json  # noqa: E402
    import sys  # noqa: E402

    from absl import flags, logging  # noqa: E402
    import tensorflow as tf  # noqa: E402

    from preprocessing import cli, paths
    from preprocessing.building import runners
    from preprocessing.building import summary as summary_lib
    from preprocessing.media import faces as faces_lib
    from preprocessing.media import video
    from preprocessing.video_faces import sources as video_sources
    from preprocessing.video_faces import summary as video_summary
    from preprocessing.video_faces import transforms as video_transforms
    from tfds_builder import beam_builder, launcher  # noqa: E402
    from tfds_builder.video_faces import video_faces_dataset_builder as vf  # noqa: E402

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class VideoBuildConfig:
    """Everything one video build needs; `main` makes it from flags, tests directly."""

    manual_dir: str
    data_dir: str
    layout: str = "auto"
    runner: str = runners.LOCAL
    num_workers: int = 0  # 0: every core.
    running_mode: str = "multi_processing"
    beam_pipeline_options: tuple[str, ...] = ()
    frames: video_transforms.FrameOptions = video_transforms.FrameOptions()
    splits: video_sources.SplitOptions = video_sources.SplitOptions()
    max_reject_fraction: float | None = beam_builder.DEFAULT_MAX_REJECT_FRACTION
    overwrite: bool = False
    allow_links_outside_input: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the bad value and what is accepted."""
        launcher.validate_common(
            manual_dir=self.manual_dir,
            data_dir=self.data_dir,
            max_reject_fraction=self.max_reject_fraction,
            num_workers=self.num_workers,
            running_mode=self.running_mode,
        )
        if self.layout != "auto" and self.layout not in vf.CONFIGS:
            raise ValueError(
                f"--layout={self.layout!r} is not 'auto' or one of {list(vf.CONFIGS)}."
            )
        self.frames.validate()
        self.splits.validate()


def make_builder(config: VideoBuildConfig, layout: str, *, worker_log: str | None = None):
    """The builder of `layout` for `config` (cheap: nothing is read or written)."""
    return vf.Builder(
        data_dir=config.data_dir,
        config=layout,
        frame_options=config.frames,
        split_options=config.splits,
        max_reject_fraction=config.max_reject_fraction,
        reject_limit_flag="--max_reject_fraction",
        allow_links_outside_input=config.allow_links_outside_input,
        worker_log=worker_log,
    )


def log_path(config: VideoBuildConfig, layout: str) -> str:
    """`<data_dir>/video_faces/<layout>/logs/build-<UTC time>-<pid>.log`."""
    return launcher.log_path(config.data_dir, vf.DATASET_NAME, layout)


def run(config: VideoBuildConfig, *, beam_runner=None, beam_options=None, worker_log=None) -> dict:
    """Builds (or reuses) the dataset; returns what happened.

    Returns:
        {"dataset_dir", "dataset" (the name to train on, `video_faces/<layout>`),
        "layout", "summary", "runner", "action" ("built", "reused", "reused_unrecorded"),
        "leftovers", "contact_sheet" (face_crops.png in the dataset folder, or None)}.

    Raises:
        ValueError, FileNotFoundError: bad flags or inputs, naming them
            (fingerprint.InputsChangedError: the dataset was built from other inputs).
        PermissionError: data_dir is not writable.
        summary_lib.RejectFractionExceededError: too many rejects; says why.
    """
    config.validate()
    tool_logging.details().info(
        "Video build config: %s", json.dumps(dataclasses.asdict(config), sort_keys=True)
    )
    layout = video_sources.find_video_layout(config.manual_dir, config.layout)
    logging.info("Layout: %s at %s.", layout.kind, layout.root)
    paths.ensure_writable(config.data_dir)
    runner_name = "FnApiRunner" if config.runner == runners.LOCAL else config.runner
    if beam_runner is None and beam_options is None:
        beam_runner, beam_options, runner_name = launcher.runner_and_options(
            config.runner, config.num_workers, config.running_mode, config.beam_pipeline_options
        )
    outcome, summary = launcher.prepare(
        make_builder(config, layout.kind, worker_log=worker_log),
        manual_dir=config.manual_dir,
        beam_runner=beam_runner,
        beam_options=beam_options,
        overwrite=config.overwrite,
    )
    sheet = paths.join(outcome.dataset_dir, video_summary.CONTACT_SHEET_FILENAME)
    if outcome.action == "built" and summary and summary["total"]["written"]:
        video_summary.write_contact_sheet(outcome.dataset_dir, sheet)
    return {
        "dataset_dir": outcome.dataset_dir,
        "dataset": f"{vf.DATASET_NAME}/{layout.kind}",
        "layout": layout.kind,
        "summary": summary,
        "runner": runner_name,
        "action": outcome.action,
        "leftovers": list(outcome.leftovers),
        "contact_sheet": sheet if tf.io.gfile.exists(sheet) else None,
    }


def define_flags() -> None:
    """Defines the launcher's flags; called by `run_main`, so importing defines none."""
    launcher.define_common_flags(
        inputs_help="Input videos (local or gs://): a <split>/{real,fake}/**/<video> tree, "
        "FaceForensics++ or Celeb-DF as downloaded.",
        data_dir_help="Output TFDS data_dir (local or gs://); the dataset lands in "
        "<data_dir>/video_faces/<layout>/1.0.0/.",
        reject_help="Fail when a larger fraction of the videos is rejected as bad input "
        "(deliberate leaves excluded).",
    )
    flags.adopt_module_key_flags(launcher)  # --help lists them as this tool's own.
    _define_layout_flags()
    _define_sampling_flags()
    _define_face_flags()


def _define_layout_flags() -> None:
    """Input layout and splits."""
    flags.DEFINE_enum(
        "layout",
        "auto",
        ["auto", *vf.CONFIGS],
        "Input layout (the dataset config); auto: FaceForensics++, Celeb-DF or folders, "
        "whichever --manual_dir holds.",
    )
    flags.DEFINE_float(
        "validation_fraction",
        video_sources.SplitOptions.validation_fraction,
        "Share of groups hashed to validation when the layout has no split list for it.",
    )
    flags.DEFINE_float(
        "test_fraction",
        video_sources.SplitOptions.test_fraction,
        "Share of groups hashed to test when the layout has no test list.",
    )
    flags.DEFINE_enum(
        "ffpp_compression",
        video_sources.SplitOptions.ffpp_compression,
        sorted(video_sources.FFPP_COMPRESSIONS),
        "FaceForensics++ compression to read.",
    )


def _define_sampling_flags() -> None:
    """Which frames are decoded, and how a video spreads over workers."""
    flags.DEFINE_integer(
        "frames_per_video",
        None,
        f"Frames sampled per video, spread evenly (default {video.DEFAULT_MAX_FRAMES} unless "
        "--frames_per_second is set).",
    )
    flags.DEFINE_float(
        "frames_per_second",
        None,
        "Sample each video at this rate (thinned to --frames_per_video when both are set).",
    )
    cli.require_positive_finite("frames_per_second")
    flags.DEFINE_integer(
        "frame_cap", video.HARD_CAP, f"Never more frames per video (at most {video.HARD_CAP})."
    )
    flags.DEFINE_integer(
        "min_frames",
        video_transforms.DEFAULT_MIN_FRAMES,
        "Videos holding fewer frames are rejected as too_short.",
    )
    flags.DEFINE_integer(
        "max_frame_pixels", video.DEFAULT_MAX_PIXELS, "Larger frames: the video is huge_frame."
    )
    flags.DEFINE_integer(
        "chunk_frames",
        video_transforms.DEFAULT_CHUNK_FRAMES,
        "Sampled frames per work item: a long video spreads over workers.",
    )


def _define_face_flags() -> None:
    """Face detection and crops."""
    flags.DEFINE_integer(
        "image_size",
        video_transforms.DEFAULT_IMAGE_SIZE,
        "Side of the aligned face crops, in pixels (the training images' size).",
    )
    flags.DEFINE_enum(
        "face_detector",
        video_transforms.FrameOptions.detector,
        list(faces_lib.FACE_DETECTORS),
        "Which face detector finds the faces: retinaface (about 10x faster) or mtcnn; both feed "
        "the same 5-landmark alignment. Part of the build's options (a change rebuilds).",
    )
    flags.DEFINE_integer(
        "min_face_size",
        video_transforms.FrameOptions.min_face_size,
        "Faces smaller than this (pixels) are not cropped.",
    )
    flags.DEFINE_float(
        "min_face_confidence",
        video_transforms.FrameOptions.min_face_confidence,
        "The face detector's score below which a candidate is not a face.",
    )
    flags.DEFINE_integer(
        "max_faces_per_frame",
        video_transforms.DEFAULT_MAX_FACES_PER_FRAME,
        "Largest faces kept per frame (1: the manipulated face of FF++/Celeb-DF videos, not a "
        "bystander's).",
    )


def config_from_flags(argv) -> VideoBuildConfig:
    return VideoBuildConfig(
        manual_dir=FLAGS.manual_dir,
        data_dir=FLAGS.data_dir,
        layout=FLAGS.layout,
        runner=FLAGS.runner,
        num_workers=FLAGS.num_workers,
        running_mode=FLAGS.running_mode,
        beam_pipeline_options=tuple(FLAGS.beam_pipeline_options) + tuple(argv[1:]),
        frames=video_transforms.FrameOptions(
            frames_per_video=FLAGS.frames_per_video,
            frames_per_second=FLAGS.frames_per_second,
            frame_cap=FLAGS.frame_cap,
            min_frames=FLAGS.min_frames,
            image_size=FLAGS.image_size,
            detector=FLAGS.face_detector,
            min_face_size=FLAGS.min_face_size,
            min_face_confidence=FLAGS.min_face_confidence,
            max_faces_per_frame=FLAGS.max_faces_per_frame,
            max_frame_pixels=FLAGS.max_frame_pixels,
            chunk_frames=FLAGS.chunk_frames,
        ),
        splits=video_sources.SplitOptions(
            validation_fraction=FLAGS.validation_fraction,
            test_fraction=FLAGS.test_fraction,
            ffpp_compression=FLAGS.ffpp_compression,
        ),
        max_reject_fraction=FLAGS.max_reject_fraction,
        overwrite=FLAGS.overwrite,
        allow_links_outside_input=FLAGS.allow_links_outside_input,
    )


def _print_result(result: dict, log_file: str) -> None:
    how = (
        f"built; Beam runner: {result['runner']}"
        if result["action"] == "built"
        else "reused: built earlier from the same inputs and options"
    )
    print(f"Dataset: {result['dataset_dir']} ({how})")
    print(f"Train on it with: dfd-train --dataset={result['dataset']} ...")
    print(f"Log: {log_file}")
    if result["contact_sheet"]:
        print(f"Face crops of a few videos per split: {result['contact_sheet']}")
    if result["summary"]:
        print(video_summary.format_table(result["summary"]))


def main(argv):
    config = config_from_flags(argv)
    # Wrong paths and values fail here, before a log folder is made in --data_dir.
    config.validate()
    layout = video_sources.find_video_layout(config.manual_dir, config.layout)
    paths.ensure_writable(config.data_dir)
    log_file = log_path(config, layout.kind)
    with launcher.logged(log_file, _IMPORT_STDERR) as local_log:
        result = run(config, worker_log=local_log)
    _print_result(result, log_file)


def run_main():
    define_flags()
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-build-video-dataset",
        extra_user_errors=_user_errors(),
    )


def _user_errors():
    from preprocessing.building import dataset_dirs  # pylint: disable=import-outside-toplevel

    return (
        summary_lib.RejectFractionExceededError,
        summary_lib.EmptySplitError,
        dataset_dirs.BuildInProgressError,
    )


if __name__ == "__main__":
    run_main()
