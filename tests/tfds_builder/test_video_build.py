"""The video build end to end: real PyAV clips, real MTCNN, real Beam (FnApiRunner), real TFDS.

The clips (tests/tfds_builder/video_clips.py) are built into `video_faces/folders`
once per module; each test then checks one promise: every clip accounted for,
the example schema, the crops cut as prediction cuts them, splits by video, a
counter per reject reason, reuse only for the same options, training with the
trainer's flags, and video-level figures from dfd-evaluate and dfd-matrix.
"""

import collections
import dataclasses
import hashlib
import io
import json
import os

from absl import flags
import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from preprocessing import schema
from preprocessing.building import fingerprint
from preprocessing.building import summary as summary_lib
from preprocessing.video_faces import sources as video_sources
from preprocessing.video_faces import summary as video_summary
from preprocessing.video_faces import transforms as video_transforms
from tests.tfds_builder import video_clips
from tests.trainer import tiny_data, tiny_detector
from tfds_builder import build_videos
from trainer.evaluation import evaluate_lib, matrix_lib
from trainer.inference import media

FRAME_OPTIONS = video_transforms.FrameOptions(
    frames_per_video=video_clips.FRAMES_PER_VIDEO,
    min_frames=video_clips.MIN_FRAMES,
    chunk_frames=video_clips.CHUNK_FRAMES,
)
DATASET = "video_faces/folders"
IMAGES = "tiny_image_faces"


def _config(raw, data_dir, **overrides):
    values = dict(
        manual_dir=str(raw),
        data_dir=str(data_dir),
        running_mode="in_memory",
        frames=FRAME_OPTIONS,
        max_reject_fraction=None,
    )
    values.update(overrides)
    return build_videos.VideoBuildConfig(**values)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_build")
    expected = video_clips.write_folders(str(root / "raw"))
    result = build_videos.run(_config(root / "raw", root / "data"))
    return root, expected, result


def _examples(dataset_dir):
    """{split: [example dict with numpy values]} in the stored order."""
    builder = tfds.builder_from_directory(dataset_dir)
    return {
        split: list(
            tfds.as_numpy(
                builder.as_dataset(
                    split=split,
                    shuffle_files=False,
                    decoders={schema.IMAGE: tfds.decode.SkipDecoding()},
                )
            )
        )
        for split in builder.info.splits
    }


def _ledger_view(dataset_dir):
    with open(os.path.join(dataset_dir, summary_lib.REJECTS_FILENAME)) as f:
        rejects = {r["id"]: r for r in map(json.loads, f)}
    with open(os.path.join(dataset_dir, summary_lib.SUMMARY_FILENAME)) as f:
        summary = json.load(f)
    return rejects, summary


def test_every_clip_is_written_or_rejected_with_its_reason(built):
    _, expected, result = built
    dataset_dir = result["dataset_dir"]
    assert (result["action"], result["dataset"]) == ("built", DATASET)
    rejects, summary = _ledger_view(dataset_dir)
    examples = _examples(dataset_dir)
    videos_written = {e[schema.VIDEO_ID].decode() for split in examples.values() for e in split}
    for clip_id, (outcome, reason) in expected.items():
        if outcome == "rejected":
            assert rejects[clip_id]["reason"] == reason, (clip_id, rejects[clip_id])
            assert clip_id not in videos_written, clip_id
        else:
            assert clip_id in videos_written and clip_id not in rejects, clip_id
    assert set(rejects) | videos_written == set(expected)  # README.txt is no input.
    total = summary["total"]
    assert (total["read"], total["written"], total["rejected"]) == (
        len(expected),
        len(videos_written),
        len(rejects),
    )
    # The chunk that broke after its first frames decoded says so.
    assert "2 of 3 sampled frames decoded" in rejects["validation/real/cut_late.mp4"]["detail"]
    # Counts per split and label: videos, and faces = the examples written.
    for split, rows in summary["splits"].items():
        faces_written = sum(row["faces"] for row in rows.values())
        assert faces_written == len(examples[split]), split
        for label, row in rows.items():
            assert row["read"] == row["written"] + row["rejected"], (split, label)
            assert row["read"] == sum(
                1
                for clip_id in expected
                if clip_id.split("/")[0] == split and clip_id.split("/")[1] == label
            )
    table = video_summary.format_table(summary)
    assert "| train | fake | 3 | 2 | 1 |" in table and "Rejected videos by reason:" in table
    with Image.open(result["contact_sheet"]) as sheet:  # face_crops.png, drawn from the data
        assert sheet.format == "PNG" and sheet.width >= 6 * 96 and sheet.height > 3 * 96


def test_the_same_clip_under_both_labels_is_rejected_with_both_names(built):
    # Issue 20: identical crops were stored under both labels with no warning.
    _, _, result = built
    rejects, _ = _ledger_view(result["dataset_dir"])
    detail = rejects["validation/fake/twin.mp4"]["detail"]
    assert "fake: validation/fake/twin.mp4" in detail and "real: validation/real/twin.mp4" in detail


def test_a_split_whose_videos_are_all_rejected_fails_after_writing_its_rejects(tmp_path):
    # Issue 20: TFDS failed inside Beam ("total number of generated examples is 0 for
    # split validation"): five tracebacks, no summary, no rejects.jsonl.
    raw = tmp_path / "raw"
    for clip_id in ("train/real/a.mp4", "validation/fake/b.mp4"):
        (raw / clip_id).parent.mkdir(parents=True)
        (raw / clip_id).write_text("<html>not a video</html>")
    with pytest.raises(
        summary_lib.EmptySplitError,
        match=r"no examples for split train \(1 input\(s\), all rejected\), validation "
        r"\(1 input\(s\), all rejected\).*not_a_video: 2",
    ):
        build_videos.run(_config(raw, tmp_path / "data"))
    config_dir = tmp_path / "data" / "video_faces" / "folders"
    failed = sorted(name for name in os.listdir(config_dir) if ".failed-" in name)
    assert [name.split(".failed-")[1] for name in failed] == ["rejects.jsonl", "summary.json"]
    with open(config_dir / failed[0]) as f:
        assert {json.loads(line)["id"] for line in f} == {
            "train/real/a.mp4",
            "validation/fake/b.mp4",
        }


def test_examples_have_the_image_schema_plus_video_features(built):
    _, expected, result = built
    examples = _examples(result["dataset_dir"])
    builder = tfds.builder_from_directory(result["dataset_dir"])
    assert set(builder.info.features) == set(schema.video_features())
    sources_seen = {}
    per_video = collections.Counter()
    for split, items in examples.items():
        for example in items:
            video_id = example[schema.VIDEO_ID].decode()
            image = example[schema.IMAGE]
            with Image.open(io.BytesIO(image)) as crop:
                assert (crop.format, crop.size, crop.mode) == ("JPEG", (256, 256), "RGB")
            assert example[schema.SHA256].decode() == hashlib.sha256(image).hexdigest()
            label = schema.LABEL_NAMES[int(example[schema.LABEL])]
            assert video_id.split("/")[:2] == [split, label]
            example_id = example[schema.ID].decode()
            frame_part = f"f{int(example[schema.FRAME_INDEX]):06d}_face0.jpg"
            assert example_id == f"{video_id}/{frame_part}"
            stem = os.path.splitext(os.path.basename(video_id))[0]
            assert example[schema.FILENAME].decode() == f"{stem}_{frame_part}"
            assert int(example[schema.TRACK_ID]) == 0  # One slowly moving face: one track.
            sources_seen[video_id] = example[schema.SOURCE].decode()
            per_video[video_id] += 1
    assert sources_seen == {
        "train/real/walk_a.mp4": "real",
        "train/real/walk_b.mov": "real",
        "train/fake/walk_c.mp4": "fake",
        "train/fake/FaceSwap/walk_d.mkv": "FaceSwap",
        "validation/real/walk_e.mp4": "real",
        "validation/fake/walk_f.mp4": "fake",
        "test/real/walk_g.mp4": "real",
        "test/fake/Deepfakes/walk_h.mp4": "Deepfakes",
    }
    assert set(per_video) == {i for i, (outcome, _) in expected.items() if outcome == "written"}
    assert all(n <= video_clips.FRAMES_PER_VIDEO for n in per_video.values())


def test_crops_are_cut_as_prediction_cuts_them(built):
    """dfd-predict's own stage on the same video gives byte-identical crops: same sampling,
    detector, TEMPLATE, and size (its crop for a 224-px model is the build's 256 px)."""
    root, _, result = built
    examples = _examples(result["dataset_dir"])["test"]
    video_id = "test/real/walk_g.mp4"
    stored = {
        (int(e[schema.FRAME_INDEX]), 0): e[schema.IMAGE]
        for e in examples
        if e[schema.VIDEO_ID].decode() == video_id
    }
    options = media.MediaOptions(max_faces=1, max_frames=video_clips.FRAMES_PER_VIDEO)
    path = str(root / "raw" / video_id)
    _, chunks = media.plan_video(path, options)
    crops = {}
    for times in chunks:
        _, found = media.inspect_video_chunk(
            path, times, options, options.face_detector(), media.crop_size(224)
        )
        crops.update(found)
    assert media.crop_size(224) == FRAME_OPTIONS.image_size
    assert stored and crops == stored


def test_no_video_has_frames_in_two_splits(built):
    _, _, result = built
    splits_of = collections.defaultdict(set)
    for split, items in _examples(result["dataset_dir"]).items():
        for example in items:
            splits_of[example[schema.VIDEO_ID].decode()].add(split)
    assert splits_of and all(len(splits) == 1 for splits in splits_of.values()), splits_of
    # The byte copy of a training clip placed in test gave no test example.
    assert "test/fake/Deepfakes/copy.mp4" not in splits_of


def test_a_beam_counter_per_reject_reason(built):
    root, expected, _ = built
    listed = video_sources.list_videos(video_sources.find_video_layout(str(root / "raw")))
    chosen = [s for s in listed if expected[s.id][0] == "rejected" or s.id.endswith("walk_c.mp4")]
    pipeline = TestPipeline(runner=FnApiRunner())
    built_examples = (
        pipeline | beam.Create(chosen) | video_transforms.BuildVideoExamples(FRAME_OPTIONS)
    )
    _ = built_examples["ledger"] | beam.Map(lambda record: None)
    result = pipeline.run()
    result.wait_until_finish()
    counters = collections.Counter()  # Summed over the steps that count the same name.
    for counter in result.metrics().query(
        MetricsFilter().with_namespace(video_transforms.METRICS_NAMESPACE)
    )["counters"]:
        counters[counter.key.metric.name] += counter.committed
    reasons = collections.Counter(reason for outcome, reason in expected.values() if reason)
    for reason, count in reasons.items():
        assert counters.pop(f"rejected_{reason}") == count, reason
    assert counters.pop("duplicate_across_splits") == 1
    assert counters.pop("written_train") == 1
    assert counters.pop("faces_train") >= 1
    assert counters.pop("video_chunks") >= 3  # walk_c, no_face and cut_late: 2 chunks each
    assert counters.pop("frames_decoded") >= 3
    assert +counters == collections.Counter()


def test_reused_for_the_same_inputs_refused_for_other_options(built):
    root, _, result = built
    again = build_videos.run(_config(root / "raw", root / "data"))
    assert again["action"] == "reused" and again["dataset_dir"] == result["dataset_dir"]
    other = build_videos.VideoBuildConfig(
        manual_dir=str(root / "raw"),
        data_dir=str(root / "data"),
        frames=video_transforms.FrameOptions(frames_per_video=4, min_frames=4),
    )
    with pytest.raises(fingerprint.InputsChangedError, match="option frames_per_video=3 then"):
        build_videos.run(other)
    # The face detector is part of the content: another one is another build.
    by_mtcnn = dataclasses.replace(FRAME_OPTIONS, detector="mtcnn")
    with pytest.raises(
        fingerprint.InputsChangedError, match="option detector='retinaface' then, 'mtcnn' now"
    ):
        build_videos.run(_config(root / "raw", root / "data", frames=by_mtcnn))
    with pytest.raises(ValueError, match="--face_detector='haar' is not one of"):
        dataclasses.replace(FRAME_OPTIONS, detector="haar").validate()
    with pytest.raises(ValueError, match="--frames_per_video=300 is not in"):
        build_videos.run(
            _config(root / "raw", root / "x", frames=video_transforms.FrameOptions(300))
        )


def test_the_trainer_trains_on_it_with_todays_flags(built, tmp_path):
    """dfd-train's own flags, parsed as the command parses them; the trainer reads image + label.

    In this process (no second TensorFlow start-up), with the tiny backbone: the
    point is the dataset's contract with the trainer, not ResNet50.
    """
    root, _, _ = built
    from trainer import task
    from trainer.training import train_lib

    task.define_flags()

    backbone = ["--backbone=tiny"]
    model_dir = tmp_path / "model"
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(
            [
                "dfd-train",
                f"--data_dir={root / 'data'}",
                f"--dataset={DATASET}",
                f"--model_dir={model_dir}",
                *backbone,
                "--weights=none",
                "--image_size=32",
                "--strategy=one_device",
                "--global_batch_size=2",
                "--epochs=1",
                "--steps_per_epoch=1",
                "--validation_steps=1",
                "--verbose=0",
            ]
        )
        config = task.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()
    result = train_lib.run(config)
    assert result["epochs_completed"] == 1 and len(result["history"]) == 1
    assert (model_dir / "export" / "saved_model.pb").is_file()


def test_evaluate_and_matrix_report_video_level_figures(built, tmp_path):
    root, _, _ = built
    videos_dir = str(root / "data")
    # The tiny image set under a name of its own: `real_and_fake_faces` means the registered
    # builder (configs, 1.1.0) in any process that imported it, not tiny_data's 1.0.0.
    images_dir = str(tmp_path / "images")
    tfds.dataset_builders.store_as_tfds_dataset(
        name=IMAGES,
        version="1.0.0",
        features=schema.features(),
        split_datasets={"test": list(tiny_data.examples("test", 8, size=40))},
        data_dir=images_dir,
        download_config=tfds.download.DownloadConfig(num_shards=1),
    )
    export_dir = tiny_detector.export_tiny_detector(str(tmp_path / "tiny"))
    reports = {}
    for label, data_dir, name in (("faces", images_dir, IMAGES), ("clips", videos_dir, DATASET)):
        reports[label] = evaluate_lib.run(
            export_dir=export_dir,
            data_dir=data_dir,
            dataset=name,
            report_dir=str(tmp_path / f"report_{label}"),
            threshold="0.5",
        )
    clips = reports["clips"]
    assert clips["num_videos"] == 2 and clips["video_metrics"]["roc_auc"] is not None
    assert reports["faces"]["video_metrics"] is None
    result = matrix_lib.run(
        [matrix_lib.parse_model(export_dir)],
        [
            matrix_lib.parse_dataset(f"label=faces,data_dir={images_dir},dataset={IMAGES}"),
            matrix_lib.parse_dataset(f"label=clips,data_dir={videos_dir},dataset={DATASET}"),
        ],
        str(tmp_path / "matrix"),
    )
    for values in result["matrices"].values():
        assert len(values) == 1 and len(values[0]) == 2  # [model][dataset]
    for label, figures in reports.items():
        cell = result["cells"]["tiny"][label]
        for key in ("roc_auc", "eer", "accuracy", "num_examples"):
            assert cell[key] == pytest.approx(figures["metrics"][key], abs=1e-12), (label, key)
        assert cell["num_videos"] == figures["num_videos"]
        for key in ("roc_auc", "eer", "accuracy"):
            expected = figures["video_metrics"][key] if figures["video_metrics"] else None
            assert cell[f"video_{key}"] == pytest.approx(expected, abs=1e-12), (label, key)
