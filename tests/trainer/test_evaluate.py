"""trainer.evaluate on a real TFDS dataset and a real export: threshold, report, plots, CLI."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from sklearn import metrics as skm

from tests.trainer import tiny_data, tiny_detector
from trainer import evaluate, export, metrics, scoring
from trainer import report as report_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data.write(
        str(tmp_path_factory.mktemp("data")), train=4, validation=16, test=12, size=40
    )


@pytest.fixture()
def export_dir(tmp_path):
    return tiny_detector.export_tiny_detector(str(tmp_path / "model"))


def _read_scores(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([0 if row["label"] == "real" else 1 for row in rows])
    return rows, labels, np.array([float(row["p_fake"]) for row in rows])


def test_threshold_from_validation_applied_to_test(data_dir, export_dir, tmp_path):
    report_dir = str(tmp_path / "report")
    report = evaluate.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=report_dir,
        threshold="eer",
        write_threshold=True,
    )
    # The threshold is validation's EER operating point, computed independently here.
    builder = evaluate.open_dataset(data_dir)
    validation = evaluate.score_split(builder, "validation", export.load_scorer(export_dir))
    assert len(validation.ids) == 16
    expected_threshold, _ = metrics.choose_threshold(validation.labels, validation.scores, "eer")
    assert report["threshold"]["value"] == pytest.approx(expected_threshold)
    assert report["threshold"]["description"] == "EER on validation"
    assert report["threshold_split_metrics"]["num_examples"] == 16

    # Test figures agree with scikit-learn on the per-image scores the report wrote.
    rows, labels, scores = _read_scores(os.path.join(report_dir, "scores.csv"))
    assert len(rows) == 12 and len({row["id"] for row in rows}) == 12
    assert all(row["id"].startswith("test/") for row in rows)
    figures = report["metrics"]
    threshold = report["threshold"]["value"]
    assert figures["num_examples"] == 12
    assert figures["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)
    assert figures["average_precision"] == pytest.approx(
        skm.average_precision_score(labels, scores), abs=1e-6
    )
    assert figures["accuracy"] == pytest.approx(skm.accuracy_score(labels, scores >= threshold))
    assert figures["confusion_matrix"] == skm.confusion_matrix(labels, scores >= threshold).tolist()
    # The notebook's table: every row equals scikit-learn's classification_report.
    expected = skm.classification_report(
        labels,
        scores >= threshold,
        target_names=["real", "fake"],
        output_dict=True,
        zero_division=0,
    )
    table = {
        line[:14].strip(): [float(v) for v in line[14:].split()]
        for line in report_lib.classification_table(figures).splitlines()[2:]
        if line.strip()
    }
    for name in ("real", "fake", "macro avg", "weighted avg"):
        row = expected[name]
        assert table[name] == pytest.approx(
            [row["precision"], row["recall"], row["f1-score"], row["support"]], abs=5e-5
        ), name
    assert table["accuracy"] == pytest.approx([expected["accuracy"], 12], abs=5e-5)

    # Files: JSON equal to what run() returned, Markdown naming the threshold's origin, plots.
    with open(os.path.join(report_dir, "report.json")) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    with open(os.path.join(report_dir, "report.md")) as f:
        text = f.read()
    assert "EER on validation" in text and "detector.json" in text
    assert "precision    recall  f1-score   support" in text
    assert sorted(os.path.basename(p) for p in report["plots"].values()) == sorted(
        report_lib.PLOT_FILES.values()
    )
    for path in report["plots"].values():
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 200

    # --write_threshold: predict now applies the calibrated threshold.
    metadata = export.read_metadata(export_dir)
    assert metadata.threshold == pytest.approx(threshold)
    assert metadata.threshold_source == "EER on validation"
    assert scoring.Detector(export_dir).threshold == pytest.approx(threshold)


def test_fixed_and_max_f1_thresholds(data_dir, export_dir, tmp_path):
    report = evaluate.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=str(tmp_path / "fixed"),
        threshold="0.3",
        max_examples=6,
    )
    assert report["threshold"] == {
        "value": 0.3,
        "rule": "fixed",
        "chosen_on": None,
        "description": "fixed by --threshold",
        "written_to_export": False,
        "export_threshold_before": 0.5,
    }
    assert report["threshold_split_metrics"] is None
    assert report["metrics"]["num_examples"] == 6
    assert (
        export.read_metadata(export_dir).threshold == 0.5
    )  # Not written without --write_threshold.
    report = evaluate.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=str(tmp_path / "f1"),
        threshold="max_f1",
    )
    assert report["threshold"]["description"] == "max-F1 on validation"


def test_bad_inputs_are_named(data_dir, export_dir, tmp_path):
    with pytest.raises(ValueError, match="Split 'dev' is not in .*'test', 'train', 'validation'"):
        evaluate.run(
            export_dir=export_dir,
            data_dir=data_dir,
            report_dir=str(tmp_path / "r"),
            split="dev",
            threshold="0.5",
        )
    with pytest.raises(ValueError, match="'best' is not one of"):
        evaluate.run(
            export_dir=export_dir,
            data_dir=data_dir,
            report_dir=str(tmp_path / "r"),
            threshold="best",
        )
    with pytest.raises(FileNotFoundError, match="--data_dir=.*preprocessing.build"):
        evaluate.run(
            export_dir=export_dir,
            data_dir=str(tmp_path / "nothing"),
            report_dir=str(tmp_path / "r"),
        )
    with pytest.raises(FileNotFoundError, match="not an export"):
        evaluate.run(export_dir=str(tmp_path), data_dir=data_dir, report_dir=str(tmp_path / "r"))


def test_command_line_prints_headline_and_paths(data_dir, export_dir, tmp_path):
    model_dir = os.path.dirname(export_dir)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.evaluate",
            f"--model_dir={model_dir}",
            f"--data_dir={data_dir}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.startswith("test (12 images) at threshold ")
    assert "ROC-AUC" in completed.stdout
    report_dir = os.path.join(model_dir, "report")
    assert f"report:         {os.path.join(report_dir, 'report.md')}" in completed.stdout
    assert f"exported model: {export_dir}" in completed.stdout
    reprinted = subprocess.run(
        [sys.executable, "-m", "trainer.report", f"--report_dir={report_dir}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert reprinted.returncode == 0, reprinted.stderr[-2000:]
    assert reprinted.stdout == completed.stdout
