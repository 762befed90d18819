"""trainer.batch_score: Beam RunInference with the exported model, on the local FnApiRunner."""

import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that
import pytest

from tests import media_samples
from tests.trainer import tiny_detector
from trainer.inference import batch_score_lib, media, predict_lib, scoring

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = str(pathlib.Path(sys.executable).parent / "dfd-batch-score")
# Lines of Beam, TensorFlow and the root logger that a run used to print (issue 13.7).
LIBRARY_NOISE = (
    "apitools not found",
    "Converting string literal type hint",
    "WriteImpl min_shards",
    "starting control server",
    "Resource module is not available",
    "sdk_worker",
    "local_job_service",
    "oneDNN",
)


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


def _read(output):
    files = glob.glob(output + "-*.jsonl")
    return {os.path.basename(r["path"]): r for f in files for r in map(json.loads, open(f))}


def test_job_writes_one_line_per_input_rejects_included(export_dir, images, tmp_path):
    output = str(tmp_path / "out" / "scores")
    counts = batch_score_lib.run(
        export_dir=export_dir,
        inputs=[str(images), str(tmp_path / "nothing-*.jpg")],
        output=output,
        running_mode="in_memory",
        max_batch_size=3,
        num_shards=1,
    )
    files = glob.glob(output + "-*.jsonl")
    assert [os.path.basename(f) for f in files] == ["scores-00000-of-00001.jsonl"]
    records = _read(output)
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
        "status": "not_found",
        "error": "no file matches this glob",
    }
    assert records["broken.jpg"]["status"] == "truncated"
    assert records["notes.txt"]["error"].startswith("not a readable image")
    # Same scores as the one-machine tool, and labels at the export's threshold (0.5).
    detector = scoring.Detector(export_dir)
    good = sorted(str(images / name) for name in records if name.startswith("face"))
    for expected in scoring.predict_files(detector, good):
        record = records[os.path.basename(expected.path)]
        assert record["kind"] == "crop"  # Small square images without a face: crops (auto).
        assert record["p_fake"] == pytest.approx(expected.p_fake, abs=1e-6)
        assert record["label"] == expected.label
    assert records["face0.jpg"]["label"] == "real" and records["face3.jpg"]["label"] == "fake"
    assert counts == {
        "rejected_not_found": 1,
        "rejected_truncated": 1,
        "rejected_not_an_image": 1,
        "num_inferences": 5,
        "scored_real": sum(r.get("label") == "real" for r in records.values()),
        "scored_fake": sum(r.get("label") == "fake" for r in records.values()),
    }


def test_photos_and_videos_fan_out_and_match_predict(export_dir, tmp_path):
    """The same media through predict (one process) and the Beam job give the same records;
    the video is cut into chunks of 2 sampled frames, decoded as separate work items."""
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "group.jpg").write_bytes(media_samples.encode(media_samples.group_photo()))
    (folder / "coffee.jpg").write_bytes(media_samples.encode(media_samples.canvas(320, 200)))
    media_samples.write_video(
        str(folder / "walk.webm"), media_samples.moving_faces_frames(8), rate=4, codec="libvpx-vp9"
    )
    (folder / "fake.mp4").write_text("not a video")
    options = media.MediaOptions(max_frames=4, chunk_frames=2)
    output = str(tmp_path / "out" / "scores")
    counts = batch_score_lib.run(
        export_dir=export_dir,
        inputs=[str(folder)],
        output=output,
        running_mode="in_memory",
        media_options=options,
    )
    records = _read(output)
    assert counts["video_chunks"] == 2
    expected = {
        os.path.basename(r.path): r.to_dict()
        for r in predict_lib.run(export_dir, [str(folder)], options=options)["results"]
    }
    assert (
        sorted(records) == sorted(expected) == ["coffee.jpg", "fake.mp4", "group.jpg", "walk.webm"]
    )
    for name, record in records.items():
        assert json.dumps(record, sort_keys=True) == json.dumps(expected[name], sort_keys=True), (
            name
        )
    assert records["group.jpg"]["kind"] == "photo" and len(records["group.jpg"]["faces"]) == 2
    assert records["coffee.jpg"]["status"] == "no_face"
    assert records["walk.webm"]["frames_sampled"] == 4 and len(records["walk.webm"]["tracks"]) >= 1
    assert records["fake.mp4"]["status"] == "not_a_video"


def test_score_media_composite_with_threshold_override(export_dir, images):
    paths = [str(images / "face0.jpg"), str(images / "face3.jpg")]
    with test_pipeline.TestPipeline(runner=FnApiRunner()) as pipeline:
        records = (
            pipeline
            | beam.Create(paths)
            | batch_score_lib.ScoreMedia(export_dir, threshold=0.0, image_size=32)
        )
        assert_that(
            records | beam.Map(lambda r: (os.path.basename(r["path"]), r["label"])),
            lambda got: _equal(sorted(got), [("face0.jpg", "fake"), ("face3.jpg", "fake")]),
        )


def _equal(got, expected):
    if got != expected:
        raise AssertionError(f"{got} != {expected}")


def test_handler_isolates_an_image_the_model_cannot_decode(export_dir, images):
    handler = batch_score_lib.ExportedDetectorHandler(export_dir, max_batch_size=4)
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
        batch_score_lib.ExportedDetectorHandler(export_dir, min_batch_size=8, max_batch_size=4)


def test_a_non_export_is_one_line_and_a_failed_job_leaves_no_temp_folder(
    export_dir, images, tmp_path
):
    """Issue 12 items 9 and 10."""
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.batch_score",
            f"--export_dir={tmp_path}",
            f"--inputs={images}",
            f"--output={tmp_path / 'out' / 'scores'}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    errors = [line for line in completed.stderr.splitlines() if "dfd-batch-score: error:" in line]
    assert len(errors) == 1 and "not an export" in errors[0], completed.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # Checked before the log file is made.
    # An export whose SavedModel is damaged passes the check and fails on the workers.
    broken = tmp_path / "broken_export"
    broken.mkdir()
    for name in ("detector.json", "saved_model.pb"):
        (broken / name).write_bytes(
            open(os.path.join(export_dir, name), "rb").read()[
                : 1 if name == "saved_model.pb" else None
            ]
        )
    output = tmp_path / "out2" / "scores"
    with pytest.raises(Exception):  # noqa: B017  Whatever Beam raises: the point is what is left.
        batch_score_lib.run(
            export_dir=str(broken),
            inputs=[str(images / "face0.jpg")],
            output=str(output),
            running_mode="in_memory",
        )
    assert not glob.glob(str(output.parent / "beam-temp-*"))


def _run_console(output, *args):
    """`dfd-batch-score` as a user runs it; returns (the finished process, its log file's text)."""
    done = subprocess.run(
        [SCRIPT, f"--output={output}", *args],
        cwd=output.parent.parent,
        # TensorFlow's C++ log level is the tool's choice, not the test's.
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["log"] == f"{output}.log"
    # The console: this tool's lines (and the runner's), none of the libraries'.
    for line in done.stderr.splitlines():
        assert re.search(r" (batch_score|batch_score_lib|runners)\.py:\d+\] ", line), line
    assert not [noise for noise in LIBRARY_NOISE if noise in done.stderr], done.stderr
    assert f"Full log (Beam, TensorFlow, worker processes): {output}.log" in done.stderr
    log = open(f"{output}.log").read()
    # Beam's warning at import (kept until the log existed) and its pipeline-building lines.
    assert "apitools not found" in log and "Converting string literal type hint" in log
    assert "Batch scoring done" in log
    return done, log


def test_console_shows_the_tools_lines_and_the_log_file_the_rest(export_dir, images, tmp_path):
    """Issue 13.7, in one process (the worker processes' stderr: the slow test below)."""
    done, _ = _run_console(
        tmp_path / "out" / "scores",
        f"--export_dir={export_dir}",
        f"--inputs={images / 'face0.jpg'},{images / 'face3.jpg'}",
        "--running_mode=in_memory",
        "--faces=none",
    )
    summary = json.loads(done.stdout)
    assert summary["scored_real"] == summary["scored_fake"] == 1


@pytest.mark.slow
def test_multi_processing_runner(export_dir, images, tmp_path):
    """Two worker processes, through the console script: their own stderr goes to the log."""
    output = tmp_path / "mp" / "scores"
    done, log = _run_console(
        output, f"--export_dir={export_dir}", f"--inputs={images / '*.jpg'}", "--num_workers=2"
    )
    lines = [line for path in glob.glob(f"{output}-*.jsonl") for line in open(path)]
    assert len(lines) == 5
    counts = json.loads(done.stdout)
    assert counts["scored_real"] + counts["scored_fake"] == 4
    # A worker's own lines, in the root logger's format (what this process logs is absl's).
    assert re.search(r"^(INFO|WARNING):apache_beam\.runners\.worker", log, re.M), log[-3000:]
