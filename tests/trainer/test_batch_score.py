"""trainer.batch_score: Beam RunInference with the exported model, on the local FnApiRunner."""

import glob
import json
import os

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
import pytest

from tests.trainer import tiny_detector
from trainer import batch_score, scoring


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tiny_detector.export_tiny_detector(str(tmp_path_factory.mktemp("model")))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for index, brightness in enumerate((30, 90, 160, 220)):
        (folder / f"face{index}.jpg").write_bytes(tiny_detector.jpeg_bytes(brightness, seed=index))
    (folder / "face4.png").write_bytes(tiny_detector.jpeg_bytes(120, image_format="PNG"))
    good = tiny_detector.jpeg_bytes(100, size=64)
    (folder / "broken.jpg").write_bytes(good[:200])
    (folder / "notes.txt").write_text("hello")
    return folder


def test_job_writes_one_line_per_input_rejects_included(export_dir, images, tmp_path):
    output = str(tmp_path / "out" / "scores")
    counts = batch_score.run(
        export_dir=export_dir,
        inputs=[str(images), str(tmp_path / "nothing-*.jpg")],
        output=output,
        running_mode="in_memory",
        max_batch_size=3,
        num_shards=1,
    )
    files = glob.glob(output + "-*.jsonl")
    assert [os.path.basename(f) for f in files] == ["scores-00000-of-00001.jsonl"]
    with open(files[0]) as f:
        records = {os.path.basename(r["path"]): r for r in map(json.loads, f)}
    assert sorted(records) == [
        "broken.jpg",
        "face0.jpg",
        "face1.jpg",
        "face2.jpg",
        "face3.jpg",
        "face4.png",
        "notes.txt",
        "nothing-*.jpg",
    ]
    assert records["nothing-*.jpg"] == {
        "path": str(tmp_path / "nothing-*.jpg"),
        "error": "no file matches this glob",
    }
    assert "truncated" in records["broken.jpg"]["error"].lower()
    assert records["notes.txt"]["error"].startswith("not a readable image")
    # Same scores as the one-machine tool, and labels at the export's threshold (0.5).
    detector = scoring.Detector(export_dir)
    good = sorted(str(images / name) for name in records if name.startswith("face"))
    for expected in scoring.predict_files(detector, good):
        record = records[os.path.basename(expected.path)]
        assert record["p_fake"] == pytest.approx(expected.p_fake, abs=1e-6)
        assert record["label"] == expected.label
    assert records["face0.jpg"]["label"] == "real" and records["face3.jpg"]["label"] == "fake"
    assert counts == {
        "rejected_missing": 1,
        "rejected_unreadable": 2,
        "num_inferences": 5,
        "scored_real": sum(r.get("label") == "real" for r in records.values()),
        "scored_fake": sum(r.get("label") == "fake" for r in records.values()),
    }


def test_score_images_composite_with_threshold_override(export_dir, images):
    paths = [str(images / "face0.jpg"), str(images / "face3.jpg")]
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        records = pipeline | beam.Create(paths) | batch_score.ScoreImages(export_dir, threshold=0.0)
        assert_that(
            records | beam.Map(lambda r: (os.path.basename(r["path"]), r["label"])),
            lambda got: _equal(sorted(got), [("face0.jpg", "fake"), ("face3.jpg", "fake")]),
        )


def _equal(got, expected):
    if got != expected:
        raise AssertionError(f"{got} != {expected}")


def test_handler_isolates_an_image_the_model_cannot_decode(export_dir, images):
    handler = batch_score.ExportedDetectorHandler(export_dir, max_batch_size=4)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 4}
    model = handler.load_model()
    batch = [
        (images / "face0.jpg").read_bytes(),
        b"\xff\xd8 not really a jpeg",
        (images / "face3.jpg").read_bytes(),
    ]
    results = [result.inference for result in handler.run_inference(batch, model)]
    assert results[1] == {"error": "the model could not decode this image"}
    assert results[0]["p_fake"] < 0.5 < results[2]["p_fake"]
    with pytest.raises(ValueError, match="min_batch_size"):
        batch_score.ExportedDetectorHandler(export_dir, min_batch_size=8, max_batch_size=4)


@pytest.mark.slow
def test_multi_processing_runner(export_dir, images, tmp_path):
    output = str(tmp_path / "mp" / "scores")
    counts = batch_score.run(
        export_dir=export_dir,
        inputs=[str(images / "*.jpg")],
        output=output,
        num_workers=2,
        running_mode="multi_processing",
    )
    lines = [line for path in glob.glob(output + "-*.jsonl") for line in open(path)]
    assert len(lines) == 5
    assert counts["scored_real"] + counts["scored_fake"] == 4
