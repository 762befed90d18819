"""trainer.predict on a real exported SavedModel: folders with bad files, globs, outputs, CLI."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.trainer import tiny_detector
from trainer import export
from trainer.inference import predict_lib, scoring

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tiny_detector.export_tiny_detector(str(tmp_path_factory.mktemp("model")), threshold=0.5)


@pytest.fixture()
def image_folder(tmp_path):
    """Good images of several formats beside a corrupt JPEG, a text file and an empty file."""
    folder = tmp_path / "inputs"
    (folder / "nested").mkdir(parents=True)
    (folder / "bright.jpg").write_bytes(tiny_detector.jpeg_bytes(230, seed=1))
    (folder / "dark.jpg").write_bytes(tiny_detector.jpeg_bytes(25, seed=2))
    (folder / "nested" / "gray.png").write_bytes(
        tiny_detector.jpeg_bytes(128, image_format="PNG", mode="L")
    )
    (folder / "cmyk.jpg").write_bytes(tiny_detector.jpeg_bytes(200, seed=3, mode="CMYK"))
    whole = tiny_detector.jpeg_bytes(180, size=64, seed=4)
    (folder / "corrupt.jpg").write_bytes(whole[: len(whole) // 2])  # Truncated mid-scan.
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _by_name(results):
    return {os.path.basename(result.path): result for result in results}


def test_folder_with_bad_files_scores_the_good_ones_and_reports_each_bad_one(
    export_dir, image_folder, tmp_path
):
    output = str(tmp_path / "out" / "scores.csv")
    outcome = predict_lib.run(export_dir, [str(image_folder)], output=output, batch_size=2)
    results = _by_name(outcome["results"])
    assert sorted(results) == [
        "bright.jpg",
        "cmyk.jpg",
        "corrupt.jpg",
        "dark.jpg",
        "empty.jpg",
        "gray.png",
        "notes.txt",
    ]
    for bad in ("corrupt.jpg", "notes.txt", "empty.jpg"):
        assert results[bad].p_fake is None and results[bad].error, bad
    assert "truncated" in results["corrupt.jpg"].error
    assert results["empty.jpg"].error == "empty file"
    for good in ("bright.jpg", "dark.jpg", "gray.png", "cmyk.jpg"):
        assert results[good].error is None and 0.0 <= results[good].p_fake <= 1.0, good
    # The tiny model scores brightness: ordering and labels at the recorded threshold 0.5.
    assert results["bright.jpg"].p_fake > 0.5 > results["dark.jpg"].p_fake
    assert (results["bright.jpg"].label, results["dark.jpg"].label) == ("fake", "real")
    with open(output, newline="") as f:
        rows = {os.path.basename(row["path"]): row for row in csv.DictReader(f)}
    assert set(rows) == set(results)
    assert float(rows["bright.jpg"]["p_fake"]) == pytest.approx(results["bright.jpg"].p_fake)
    assert (
        rows["notes.txt"]["p_fake"] == "" and "not a readable image" in rows["notes.txt"]["error"]
    )


def test_scores_equal_the_savedmodel_called_directly(export_dir, image_folder):
    detector = scoring.Detector(export_dir)
    files = [str(image_folder / "bright.jpg"), str(image_folder / "dark.jpg")]
    served = export.load_scorer(export_dir)(
        images=tf.constant(
            [(image_folder / "bright.jpg").read_bytes(), (image_folder / "dark.jpg").read_bytes()]
        )
    )
    expected = served["p_fake"].numpy()
    got = [result.p_fake for result in scoring.predict_files(detector, files)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_non_jpeg_inputs_are_converted_to_jpeg():
    png = tiny_detector.jpeg_bytes(90, image_format="PNG")
    converted = scoring.to_jpeg_bytes(png)
    assert converted[:2] == b"\xff\xd8"
    assert tf.image.decode_jpeg(converted).shape[-1] == 3
    rgb_jpeg = tiny_detector.jpeg_bytes(90)
    assert scoring.to_jpeg_bytes(rgb_jpeg) is rgb_jpeg  # A valid RGB JPEG keeps its bytes.
    with pytest.raises(scoring.UnreadableImageError, match="not a readable image"):
        scoring.to_jpeg_bytes(b"GIF89a but not really")


def test_globs_missing_inputs_threshold_override_and_jsonl(export_dir, image_folder, tmp_path):
    output = str(tmp_path / "scores.jsonl")
    outcome = predict_lib.run(
        export_dir,
        [
            str(image_folder / "*.jpg"),
            str(image_folder / "missing.jpg"),
            str(image_folder / "*.gif"),
        ],
        threshold=0.99,
        output=output,
    )
    results = _by_name(outcome["results"])
    assert results["missing.jpg"].error == "file not found"
    assert results["*.gif"].error == "no file matches this glob"
    assert "gray.png" not in results  # The glob is not recursive and names .jpg only.
    assert outcome["threshold"] == 0.99
    assert results["bright.jpg"].label == "real"  # 0.99 is above every tiny-model score.
    with open(output) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == len(outcome["results"])
    assert {"path", "kind", "status", "p_fake", "label"} <= set(
        next(line for line in lines if "p_fake" in line)
    )
    rejects = {os.path.basename(line["path"]): line for line in lines if "p_fake" not in line}
    assert all(set(line) <= {"path", "kind", "status", "error"} for line in rejects.values())
    assert rejects["missing.jpg"]["status"] == rejects["*.gif"]["status"] == "not_found"
    assert rejects["corrupt.jpg"]["status"] == "truncated"


def test_threshold_recorded_in_the_export_is_used(export_dir, image_folder):
    metadata = export.read_metadata(export_dir)
    bright = str(image_folder / "bright.jpg")
    p_fake = predict_lib.run(export_dir, [bright])["results"][0].p_fake
    try:
        export.write_metadata(
            export_dir,
            export.DetectorMetadata(
                image_size=metadata.image_size, threshold=p_fake + 0.01, threshold_source="test"
            ),
        )
        assert predict_lib.run(export_dir, [bright])["results"][0].label == "real"
    finally:
        export.write_metadata(export_dir, metadata)


def test_bad_output_name_is_explained(tmp_path):
    with pytest.raises(ValueError, match="--output='.*scores.txt'.*csv"):
        predict_lib.write_results([], str(tmp_path / "scores.txt"))


def test_command_line_prints_a_table_and_never_aborts(export_dir, image_folder, tmp_path):
    output = str(tmp_path / "cli.jsonl")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.predict",
            f"--export_dir={export_dir}",
            f"--output={output}",
            str(image_folder),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.strip().splitlines()
    assert lines[0].split() == ["path", "kind", "p_fake", "label", "detail"]
    assert len(lines) == 1 + 7 + 1  # Header, one row per input, the labelling rule.
    assert lines[-1].startswith("label: fake when p_fake >= ")
    assert sum("error (" in line for line in lines) == 3
    assert os.path.exists(output)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_symlink_loop_and_outside_link(export_dir, tmp_path):
    """Issue 12 item 6: a named pipe used to hang predict, a link loop scored one image 41
    times, and a link out of the folder was read (and its first bytes reported)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_text("secret-host-name\n")
    (outside / "face.jpg").write_bytes(tiny_detector.jpeg_bytes(200))
    folder = tmp_path / "inbox"
    (folder / "sub").mkdir(parents=True)
    (folder / "face.jpg").write_bytes(tiny_detector.jpeg_bytes(100))
    os.mkfifo(folder / "pipe.jpg")
    os.symlink(folder, folder / "sub" / "loop")  # sub/loop/sub/loop/... back to the top.
    os.symlink(folder / "face.jpg", folder / "same_face.jpg")  # The same real file twice.
    os.symlink(outside / "hostname", folder / "notes.txt")
    os.symlink(outside, folder / "elsewhere")
    outcome = predict_lib.run(export_dir, [str(folder)])
    results = {os.path.relpath(r.path, folder): r for r in outcome["results"]}
    assert sorted(results) == ["elsewhere", "face.jpg", "notes.txt", "pipe.jpg"]
    assert results["face.jpg"].status == "ok"
    assert results["pipe.jpg"].status == "not_a_regular_file"
    assert "named pipe" in results["pipe.jpg"].error
    for name in ("notes.txt", "elsewhere"):
        assert results[name].status == "link_outside_input"
        assert "--follow_outside_links" in results[name].error
    assert "secret" not in json.dumps([r.to_dict() for r in outcome["results"]])
    # Allowed on request: the outside file is read (and rejected as an image without quoting it).
    followed = predict_lib.run(export_dir, [str(folder)], follow_outside_links=True)["results"]
    by_name = {os.path.relpath(r.path, folder): r for r in followed}
    assert by_name["elsewhere/face.jpg"].status == "ok"
    # notes.txt is the same real file as elsewhere/hostname: read once, under the first name.
    assert "notes.txt" not in by_name
    assert by_name["elsewhere/hostname"].status == "not_an_image"
    assert "secret" not in by_name["elsewhere/hostname"].error
    # A pipe named on the command line is refused too, not opened.
    named = predict_lib.run(export_dir, [str(folder / "pipe.jpg")])["results"]
    assert named[0].status == "not_a_regular_file"


def test_a_score_that_rounds_to_the_threshold_shows_which_side_it_is_on():
    """0.50011933 and 0.50010920 at threshold 0.5001: both read 0.5001 at 4 decimals."""
    threshold = 0.50011
    above, below = (
        predict_lib.format_score(0.50011933, threshold),
        predict_lib.format_score(0.50010920, threshold),
    )
    assert (above, below) == ("0.50012", "0.500109")
    assert float(above) >= threshold > float(below)
    results = [
        scoring.Prediction(path=name, kind="crop", p_fake=score, label=label)
        for name, score, label in (("a.jpg", 0.50011933, "fake"), ("b.jpg", 0.50010920, "real"))
    ]
    table = predict_lib.format_table(results, threshold).splitlines()
    assert table[1].split()[2:4] == ["0.50012", "fake"]
    assert table[2].split()[2:4] == ["0.500109", "real"]
    assert table[-1] == "label: fake when p_fake >= 0.500110"
    assert predict_lib.format_score(0.73, threshold) == "0.7300"  # Far from it: 4 decimals.
    assert predict_lib.format_score(None, threshold) == "-"
