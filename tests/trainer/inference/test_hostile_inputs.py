"""dfd-predict against hostile inputs and outputs (issue 20, items 3b, 3d, 5, 6 and 7)."""

import io
import json
import os
import resource
import stat
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from preprocessing import cli
from preprocessing.building import inputs
from preprocessing.media import faces, images
from preprocessing.real_and_fake_faces import transforms
from tests import hostile_files
from tests.trainer import tiny_detector
from trainer.inference import drawing, media, outputs, predict_lib, scoring

REPO_ROOT = os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
)
AS_ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


NONE = media.MediaOptions(faces="none")


# ------------------------------------------------------------------ 3b: per-file size cap


def test_huge_files_are_rejected_from_their_size_unread(export_dir, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    hostile_files.sparse_file(str(folder / "stray.bin"), 3 * hostile_files.GIB)
    hostile_files.jpeg_header_then_zeros(str(folder / "download.jpg"))
    (folder / "face.jpg").write_bytes(tiny_detector.jpeg_bytes(120))
    results = predict_lib.run(export_dir, [str(folder)], options=NONE)["results"]
    by_name = {os.path.basename(result.path): result for result in results}
    for name in ("stray.bin", "download.jpg"):
        assert by_name[name].status == "file_too_large"
        assert "--max_file_bytes" in by_name[name].error
    assert by_name["face.jpg"].status == "ok"
    # The image build rejects it the same way, with its reason (counted in the ledger).
    source = inputs.SourceFile(path=str(folder / "download.jpg"), split="train", label=0, id="d")
    with pytest.raises(images.FileTooLargeError):
        transforms.read_and_validate(source)


def test_command_line_stays_small_on_gigabyte_files(export_dir, tmp_path):
    hostile_files.jpeg_header_then_zeros(str(tmp_path / "download.jpg"))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.predict",
            f"--export_dir={export_dir}",
            "--faces=none",
            str(tmp_path / "download.jpg"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert "file_too_large" in completed.stdout and "Traceback" not in completed.stderr
    assert peak_kib < 2 * 1024 * 1024, f"peak {peak_kib / 1024:.0f} MiB"


# ------------------------------------------------------------------ 3d: --annotate memory


def test_annotation_draws_a_bounded_copy_in_the_original_coordinates():
    pixels = np.zeros((3000, 4000, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    preview = media.preview_pixels(buffer.getvalue(), drawing.MAX_DRAWN_SIDE)
    assert max(preview.shape[:2]) <= drawing.MAX_DRAWN_SIDE
    record = {"faces": [], "too_small": [], "p_fake": None, "status": "no_face"}
    png = drawing.annotate_photo(preview, record, 0.5, size=(4000, 3000))
    assert Image.open(io.BytesIO(png)).size[0] <= drawing.MAX_INCHES * drawing.DPI * 1.1


# ------------------------------------------------------------------ 5: outputs checked first


def test_outputs_are_checked_before_any_work(tmp_path):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "folder.csv").mkdir()
    not_an_export = str(tmp_path / "nothing")  # Would fail only if the export were read first.
    cases = {
        str(tmp_path / "folder.csv"): "is a folder; give a file name",
        str(tmp_path / "a_file" / "scores.csv"): "is a file, not a folder",
        "gs:/bucket/scores.csv": "not a valid Cloud Storage URL",  # Not a local folder 'gs:'.
    }
    for output, message in cases.items():
        with pytest.raises(cli.UserError, match=message):
            predict_lib.run(not_an_export, ["x.jpg"], output=output)
    with pytest.raises(cli.UserError, match="--media_dir=.*is a file"):
        predict_lib.run(not_an_export, ["x.jpg"], media_dir=str(tmp_path / "a_file" / "m"))


@pytest.mark.skipif(AS_ROOT, reason="root writes in read-only folders")
def test_read_only_output_folder_is_refused_first(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(cli.UserError, match="permission denied"):
            predict_lib.run(str(tmp_path), ["x.jpg"], output=str(folder / "s.csv"))
    finally:
        folder.chmod(stat.S_IRWXU)


def test_records_are_written_as_they_come_and_kept_at_a_late_failure(
    export_dir, tmp_path, monkeypatch
):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.jpg").write_bytes(tiny_detector.jpeg_bytes(50 + 60 * index))
    output = tmp_path / "scores.jsonl"
    real_score_files = media.score_files

    def failing_late(*args, **kwargs):
        for number, result in enumerate(real_score_files(*args, **kwargs)):
            if number == 2:
                # What was written so far is on disk already, before the failure.
                assert len(output.read_text().splitlines()) == 2
                raise OSError("disk full")
            yield result

    monkeypatch.setattr(media, "score_files", failing_late)
    with pytest.raises(OSError, match="disk full"):
        predict_lib.run(export_dir, [str(folder)], output=str(output), options=NONE)
    kept = [json.loads(line) for line in output.read_text().splitlines()]
    assert [os.path.basename(record["path"]) for record in kept] == ["0.jpg", "1.jpg"]


def test_explain_model_is_checked_before_scoring(export_dir, model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(media, "score_files", lambda *a, **k: pytest.fail("scored first"))
    garbage = tmp_path / "model.keras"
    garbage.write_bytes(b"garbage, not a zip")
    with pytest.raises(ValueError, match="is not a Keras file"):
        predict_lib.run(export_dir, ["x.jpg"], explain=True, keras_model=str(garbage))
    other_size = tmp_path / "other.keras"
    tiny_detector.build_tiny_model(image_size=48).save(str(other_size))
    with pytest.raises(ValueError, match="export's image_size is 32"):
        predict_lib.run(export_dir, ["x.jpg"], explain=True, keras_model=str(other_size))
    with pytest.raises(FileNotFoundError, match="--keras_model"):
        predict_lib.run(export_dir, ["x.jpg"], explain=True, keras_model=str(tmp_path / "no"))


def test_results_writer_csv_streams_rows(tmp_path):
    output = tmp_path / "s.csv"
    with outputs.ResultsWriter(str(output)) as writer:
        writer.write({"path": "a.jpg", "kind": "crop", "status": "ok", "p_fake": 0.25})
        assert output.read_text().splitlines()[1].startswith("a.jpg,crop,ok,0.25")


# ------------------------------------------------------------------ 6: silently wrong verdicts


def _face(x, y, side):
    box = (x, y, x + side, y + side)
    marks = (
        (x + 0.3 * side, y + 0.4 * side),
        (x + 0.7 * side, y + 0.4 * side),
        (x + 0.5 * side, y + 0.6 * side),
        (x + 0.35 * side, y + 0.8 * side),
        (x + 0.65 * side, y + 0.8 * side),
    )
    return faces.Face(box=box, landmarks=marks, confidence=0.99)


def test_auto_does_not_call_a_photo_with_small_faces_or_a_large_square_a_crop():
    small = np.zeros((256, 256, 3), np.uint8)
    crowd = faces.Detections(faces=(), too_small=tuple(_face(10 * i, 10, 20) for i in range(12)))
    assert not media.looks_like_a_crop(small, crowd)
    large = np.zeros((1080, 1080, 3), np.uint8)
    assert not media.looks_like_a_crop(large, faces.Detections())  # A face MTCNN missed.
    assert media.looks_like_a_crop(small, faces.Detections())  # A synthetic crop, as before.
    many = faces.Detections(faces=(_face(0, 0, 200),), over_limit=3)
    assert not media.looks_like_a_crop(small, many)


def test_max_faces_count_and_animated_images_are_said(export_dir, tmp_path):
    assert predict_lib.faces_scored_text(16, 44) == "16 of 60 faces scored (--max_faces)"
    assert predict_lib.faces_scored_text(2, 0) == "2 face(s)"
    gif = tmp_path / "anim.gif"
    gif.write_bytes(hostile_files.animated_gif(frames=3))
    outcome = predict_lib.run(export_dir, [str(gif)], options=NONE)
    record = outcome["results"][0].to_dict()
    assert record["status"] == "ok" and record["frames_judged"] == "1 of 3"
    assert "animated: frame 1 of 3 judged" in predict_lib.format_table(outcome["results"])


def test_the_same_folder_twice_is_no_empty_folder(tmp_path):
    (tmp_path / "dup" / "a").mkdir(parents=True)
    (tmp_path / "dup" / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "dup" / "y.jpg").write_bytes(b"y")
    dup = str(tmp_path / "dup")
    files, rejects = scoring.expand_inputs([dup, dup, dup + "/a/", dup + "/"])
    assert sorted(os.path.basename(path) for path in files) == ["x.jpg", "y.jpg"]
    assert rejects == []


# ------------------------------------------------------------------ 7: small ones


def test_a_video_that_cannot_be_opened_is_unreadable(tmp_path, monkeypatch):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    clip.chmod(0)
    if AS_ROOT:  # Root reads a chmod-000 file: make the open fail as it does for a user.
        monkeypatch.setattr(
            scoring.tf.io.gfile,
            "GFile",
            lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied")),
        )
    parts, _ = media.stage_file(str(clip), NONE, None, 36)
    assert parts[0]["status"] == "unreadable", parts


def test_a_remote_output_is_written_at_start_and_filled_at_close():
    # TensorFlow's in-memory file system stands in for gs:// (both are written through gfile).
    output = "ram://dfd-test/scores.jsonl"
    writer = outputs.ResultsWriter(output)
    assert scoring.tf.io.gfile.exists(output)  # Probed before any work.
    writer.write({"path": "a.jpg", "status": "ok"})
    writer.close()
    with scoring.tf.io.gfile.GFile(output) as f:
        assert [json.loads(line)["path"] for line in f] == ["a.jpg"]
