"""trainer.evaluate on a real TFDS dataset and a real export: threshold, report, plots, CLI,
robustness under perturbations, per-source and per-video figures."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

from matplotlib import pyplot as plt
import numpy as np
from PIL import Image
import pytest
from sklearn import metrics as skm
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import schema
from tests.trainer import tiny_data, tiny_detector, tiny_video_data
from trainer import aggregation, data, export, metrics
from trainer.evaluation import evaluate_lib, perturbations, report_lib
from trainer.inference import scoring

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
    report = evaluate_lib.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=report_dir,
        threshold="eer",
        write_threshold=True,
    )
    # The threshold is validation's EER operating point, computed independently here.
    builder = data.load_builder(data_dir)
    validation = evaluate_lib.score_split(builder, "validation", export.load_scorer(export_dir))
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
    # The model card follows the threshold: validation's AUC and EER from the same scores.
    assert metadata.validation_auc == pytest.approx(
        skm.roc_auc_score(validation.labels, validation.scores), abs=1e-6
    )
    assert metadata.validation_eer == pytest.approx(
        metrics.equal_error_rate(validation.labels, validation.scores)[0]
    )
    assert scoring.Detector(export_dir).threshold == pytest.approx(threshold)


def test_fixed_and_max_f1_thresholds(data_dir, export_dir, tmp_path):
    report = evaluate_lib.run(
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
    report = evaluate_lib.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=str(tmp_path / "f1"),
        threshold="max_f1",
    )
    assert report["threshold"]["description"] == "max-F1 on validation"


def test_bad_inputs_are_named(data_dir, export_dir, tmp_path):
    with pytest.raises(ValueError, match="Split 'dev' is not in .*'test', 'train', 'validation'"):
        evaluate_lib.run(
            export_dir=export_dir,
            data_dir=data_dir,
            report_dir=str(tmp_path / "r"),
            split="dev",
            threshold="0.5",
        )
    with pytest.raises(ValueError, match="'best' is not one of"):
        evaluate_lib.run(
            export_dir=export_dir,
            data_dir=data_dir,
            report_dir=str(tmp_path / "r"),
            threshold="best",
        )
    with pytest.raises(FileNotFoundError, match="--data_dir=.*dfd-build-dataset"):
        evaluate_lib.run(
            export_dir=export_dir,
            data_dir=str(tmp_path / "nothing"),
            report_dir=str(tmp_path / "r"),
        )
    with pytest.raises(FileNotFoundError, match="not an export"):
        evaluate_lib.run(
            export_dir=str(tmp_path), data_dir=data_dir, report_dir=str(tmp_path / "r")
        )
    with pytest.raises(ValueError, match="Unknown perturbation 'sharpen'"):
        evaluate_lib.run(
            export_dir=export_dir,
            data_dir=data_dir,
            report_dir=str(tmp_path / "r"),
            perturbation_specs=["sharpen"],
        )


def test_command_line_prints_headline_and_paths(data_dir, export_dir, tmp_path):
    model_dir = os.path.dirname(export_dir)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainer.evaluate",
            f"--model_dir={model_dir}",
            f"--data_dir={data_dir}",
            "--perturbations=jpeg:50,noise:10",
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
    assert f"scores:         {os.path.join(report_dir, 'scores.csv')}" in completed.stdout
    assert os.path.join(report_dir, "plots", "robustness.png") in completed.stdout
    assert "robustness (ROC-AUC / accuracy" in completed.stdout
    assert "  jpeg     q50 " in completed.stdout and "  noise    n10 " in completed.stdout
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


# ---------------------------------------------------------------------------- robustness


def _jpegs(builder, split):
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
    )
    return [(e[schema.IMAGE].numpy(), int(e[schema.LABEL].numpy())) for e in dataset]


def test_robustness_report_scores_each_perturbation_at_the_fixed_threshold(
    data_dir, export_dir, tmp_path
):
    report_dir = str(tmp_path / "robust")
    specs = ["jpeg:90/30", "resize:0.5", "blur:2", "noise:10/40", "social:0.5@60"]
    report = evaluate_lib.run(
        export_dir=export_dir,
        data_dir=data_dir,
        report_dir=report_dir,
        threshold="eer",
        perturbation_specs=specs,
        perturbation_seed=7,
    )
    robust = report["robustness"]
    threshold = report["threshold"]["value"]
    assert robust["threshold"] == threshold and robust["seed"] == 7
    assert robust["clean"] == {
        key: report["metrics"][key] for key in ("num_examples", "roc_auc", "eer", "accuracy")
    }
    names = {p["name"]: [level["label"] for level in p["levels"]] for p in robust["perturbations"]}
    assert names == {
        "jpeg": ["q90", "q30"],
        "resize": ["x0.5"],
        "blur": ["s2"],
        "noise": ["n10", "n40"],
        "social": ["x0.5@q60"],
    }

    # One level recomputed independently: perturb the stored bytes here, score, sklearn.
    builder = data.load_builder(data_dir)
    images = _jpegs(builder, "test")
    perturbed = [perturbations.perturb(jpeg, "noise", 40, seed=7) for jpeg, _ in images]
    scorer = export.load_scorer(export_dir)
    scores = scorer(tf.constant(perturbed))[export.OUTPUT_NAME].numpy()
    labels = np.array([label for _, label in images])
    level = next(p for p in robust["perturbations"] if p["name"] == "noise")["levels"][1]
    assert level["strength"] == 40.0 and level["num_examples"] == 12
    assert level["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)
    assert level["accuracy"] == pytest.approx(skm.accuracy_score(labels, scores >= threshold))
    # Strong noise moves the scores: each image against its own clean score, same order.
    clean = scorer(tf.constant([jpeg for jpeg, _ in images]))[export.OUTPUT_NAME].numpy()
    assert np.abs(scores - clean).max() > 1e-4, np.abs(scores - clean).max()

    with Image.open(report["plots"]["robustness"]) as image:
        assert image.format == "PNG" and image.width > 800
    with open(os.path.join(report_dir, "report.md")) as f:
        text = f.read()
    assert "## Robustness" in text and "| noise | n40 |" in text and "robustness.png" in text


# ------------------------------------------------------------- per source and per video


@pytest.fixture(scope="module")
def video_data_dir(tmp_path_factory):
    return tiny_video_data.write(str(tmp_path_factory.mktemp("video")))


def _video_scores_by_hand(rows):
    """Frame rows of scores.csv -> {video: p_fake}, grouped here, scored by trainer.aggregation."""
    tracks = {}
    for row in rows:
        tracks.setdefault(row["video_id"], {}).setdefault(row["track_id"], []).append(
            float(row["p_fake"])
        )
    return {
        video: max(aggregation.track_score(frames) for frames in by_track.values())
        for video, by_track in tracks.items()
    }


def test_video_dataset_gets_video_level_and_per_source_figures(
    video_data_dir, export_dir, tmp_path
):
    report_dir = str(tmp_path / "videos")
    report = evaluate_lib.run(
        export_dir=export_dir,
        data_dir=video_data_dir,
        dataset=tiny_video_data.DATASET_NAME,
        report_dir=report_dir,
        threshold="0.5",
    )
    rows, labels, scores = _read_scores(os.path.join(report_dir, "scores.csv"))
    assert len(rows) == 32 and {"source", "video_id", "track_id"} <= set(rows[0])

    # Per video: aggregated here from scores.csv with the same rules, then scikit-learn.
    by_hand = _video_scores_by_hand(rows)
    video_label = {row["video_id"]: row["label"] == "fake" for row in rows}
    videos = sorted(by_hand)
    assert report["num_videos"] == 7 == len(videos)
    video_labels = np.array([video_label[v] for v in videos], dtype=int)
    video_scores = np.array([by_hand[v] for v in videos])
    assert report["video_metrics"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(video_labels, video_scores), abs=1e-9
    )
    assert report["video_metrics"]["accuracy"] == pytest.approx(
        skm.accuracy_score(video_labels, video_scores >= 0.5)
    )
    assert report["video_metrics"]["roc_auc"] != report["metrics"]["roc_auc"]
    with open(os.path.join(report_dir, "video_scores.csv"), newline="") as f:
        written = {row["id"]: float(row["p_fake"]) for row in csv.DictReader(f)}
    assert written == pytest.approx(by_hand, abs=1e-6)

    # Per source: a one-class source is ranked against every example of the other class.
    per_source = report["per_source"]
    assert sorted(per_source) == ["Deepfakes", "FaceSwap", "youtube"]
    sources = np.array([row["source"] for row in rows])
    fakes = sources == "Deepfakes"
    ranked = fakes | (labels == 0)
    assert per_source["Deepfakes"]["num_fake"] == int(fakes.sum()) == 10
    assert per_source["Deepfakes"]["auc_against"] == "all real"
    assert per_source["Deepfakes"]["roc_auc"] == pytest.approx(
        skm.roc_auc_score(labels[ranked], scores[ranked]), abs=1e-9
    )
    assert per_source["Deepfakes"]["accuracy"] == pytest.approx(np.mean(scores[fakes] >= 0.5))
    assert per_source["youtube"]["auc_against"] == "all fake"
    assert sorted(report["video_per_source"]) == sorted(per_source)
    with open(os.path.join(report_dir, "report.md")) as f:
        text = f.read()
    assert "## Per source" in text and "| Deepfakes | 10 | 0 | 10 |" in text
    assert "## Per video" in text and "7 videos (3 real, 4 fake)" in text


def test_a_video_with_two_labels_is_refused_by_name():
    frames = evaluate_lib.SplitScores(
        ids=["a", "b"],
        labels=np.array([0, 1]),
        scores=np.array([0.2, 0.9]),
        video_ids=["clip.mp4", "clip.mp4"],
    )
    with pytest.raises(ValueError, match="Video 'clip.mp4' has frames labelled both"):
        evaluate_lib.aggregate_videos(frames)
    with pytest.raises(ValueError, match="no video ids"):
        evaluate_lib.aggregate_videos(dataclasses.replace(frames, video_ids=None))


# ----------------------------------------------------------------------------------- plots


def test_count_text_follows_the_cell_colour_not_the_count():
    # Pale cells get black text, dark cells white, whatever the counts are.
    assert report_lib.text_colour((1.0, 1.0, 1.0, 1.0)) == "black"
    assert report_lib.text_colour((0.03, 0.19, 0.42, 1.0)) == "white"  # Blues' darkest
    assert report_lib.text_colour((0.78, 0.86, 0.94, 1.0)) == "black"  # a pale blue
    figure, axis = plt.subplots()
    matrix = np.array([[50, 1], [2, 47]])
    image = axis.imshow(matrix, cmap="Blues", vmin=0)
    report_lib.annotated_heatmap(axis, matrix, image, matrix.astype(str).tolist())
    colours = {text.get_text(): text.get_color() for text in axis.texts}
    plt.close(figure)
    assert colours == {"50": "white", "1": "black", "2": "black", "47": "white"}


def test_reliability_plot_names_what_it_draws_and_counts_each_bin():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    scores = np.array([0.05, 0.12, 0.33, 0.38, 0.71, 0.74, 0.95, 0.91])
    figure = report_lib.reliability_figure(labels, scores, num_bins=5)
    top, bottom = figure.axes
    legend = [text.get_text() for text in top.get_legend().get_texts()]
    assert "share of fakes in the bin" in legend
    assert not any("bin mean p_fake" in text for text in legend)
    counts = [int(text.get_text()) for text in bottom.texts]
    plt.close(figure)
    assert counts == metrics.reliability(labels, scores, 5).counts.tolist() == [2, 2, 0, 2, 2]
