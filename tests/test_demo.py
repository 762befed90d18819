"""Smoke run of `make demo` with its smallest settings: the same targets and modules, tiny sizes.

The Makefile's own `demo` recipe runs, step by step, as a user would see it;
only the sizes shrink (a few images, 32 px, one training step of the tiny
backbone, which goes through the same build_model/fit/export code as ResNet50)
and the install step is pointed at this test's interpreter instead of a fresh
virtualenv. The faces step (RetinaFace on a composite photo and a short video) runs
as in the full demo. Limit: 600 s, about 4x what it takes on a quiet 2-core machine.
"""

import csv
import json
import os
import pathlib
import shutil
import subprocess
import sys

from PIL import Image
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PLOTS = {
    "roc.png",
    "precision_recall.png",
    "confusion_matrix.png",
    "score_histogram.png",
    "reliability.png",
}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_demo_smallest_settings(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    # The Makefile's install stamp for these extras, newer than setup.py: make skips the
    # install step. (Any other stamp would make it switch extras, uninstalling TensorFlow
    # from the interpreter every other test runs on.)
    (venv / ".installed-cpu-test").touch()
    demo_dir = tmp_path / "demo"
    command = [
        "make",
        "--no-print-directory",
        "demo",
        f"VENV={venv}",
        "EXTRAS=cpu,test",
        f"PY={sys.executable}",
        f"DEMO_DIR={demo_dir}",
        "DEMO_SYNTHETIC_FLAGS=--image_size=32 --num_per_class_per_split=train=4,valid=3,test=3",
        "DEMO_BUILD_FLAGS=--running_mode=in_memory",
        "DEMO_TRAIN_FLAGS=--backbone=tiny --shuffle_buffer=16 --image_size=32 "
        "--global_batch_size=4 --epochs=1 --steps_per_epoch=1 --validation_steps=1 --verbose=0",
        "DEMO_FACES_FLAGS=--max_frames=4",
        "DEMO_PREDICT_COUNT=1",
    ]
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    output = completed.stdout
    assert completed.returncode == 0, f"{output[-3000:]}\n{completed.stderr[-5000:]}"

    # Progress, then the headline and the paths, as the last thing printed.
    for step in range(1, 8):
        assert f"== [{step}/7]" in output
    tail = output[output.index("== [7/7]") :]
    assert "test (6 images) at threshold " in tail and "ROC-AUC" in tail
    model_dir = demo_dir / "model"
    report_dir = model_dir / "report"
    assert f"report:         {report_dir / 'report.md'}" in tail
    assert f"exported model: {model_dir / 'export'}" in tail
    assert f"dfd-serve --export_dir={model_dir / 'export'}" in tail.splitlines()[-1]

    # Every artefact is where the demo says it is.
    report = json.loads((report_dir / "report.json").read_text())
    assert report["threshold"]["description"] == "EER on validation"
    assert report["threshold"]["written_to_export"] is True
    assert {os.path.basename(path) for path in report["plots"].values()} == PLOTS
    for name in PLOTS:
        with Image.open(report_dir / "plots" / name) as image:
            assert image.format == "PNG"
    assert (model_dir / "export" / "saved_model.pb").exists()
    detector = json.loads((model_dir / "export" / "detector.json").read_text())
    assert detector["threshold"] == pytest.approx(report["threshold"]["value"])
    assert detector["threshold_source"] == "EER on validation"
    with open(demo_dir / "predictions" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(row["label"] in ("real", "fake") for row in rows)
    assert len(list((demo_dir / "predictions" / "explanations").glob("*.gradcam.png"))) == 2
    # The faces step: one composite photo and one generated video, each with its picture.
    faces = demo_dir / "predictions" / "faces"
    records = [json.loads(line) for line in (faces / "faces.jsonl").read_text().splitlines()]
    assert sorted(record["kind"] for record in records) == ["photo", "video"]
    for name in ("group_photo.annotated.png", "walk.timeline.png"):
        with Image.open(faces / name) as image:
            assert image.format == "PNG"
