"""dfd-matrix: several exports on an image dataset and a video-like dataset, cell by cell equal
to trainer.evaluate run on one pair at a time."""

import json
import os
import pathlib
import subprocess
import sys

from PIL import Image
import pytest

from tests.trainer import tiny_data, tiny_detector, tiny_video_data
from trainer import export
from trainer.evaluation import evaluate_lib, matrix_lib

BIN = pathlib.Path(sys.executable).parent
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Two datasets and two exports: the tiny detector and its mirror image (negated logit)."""
    root = tmp_path_factory.mktemp("matrix")
    images = tiny_data.write(str(root / "images"), train=2, validation=4, test=12, size=40)
    videos = tiny_video_data.write(str(root / "videos"))
    plain = tiny_detector.export_tiny_detector(str(root / "bright"))
    model = tiny_detector.build_tiny_model()
    kernel, bias = model.get_layer("logit").get_weights()
    model.get_layer("logit").set_weights([-kernel, bias])
    mirrored = export.export_detector(
        model,
        str(root / "dark" / "export"),
        export.DetectorMetadata(image_size=tiny_detector.IMAGE_SIZE, threshold=0.4),
    )
    return root, images, videos, plain, mirrored


def test_matrix_command_equals_dfd_evaluate_pair_by_pair(prepared, tmp_path):
    root, images, videos, plain, mirrored = prepared
    output_dir = tmp_path / "out"
    done = subprocess.run(
        [
            str(BIN / "dfd-matrix"),
            f"--model={root / 'bright'}",  # a model_dir: label "bright", export inside
            f"--model=dark={mirrored}",  # an export, labelled
            f"--dataset=faces={images}",
            f"--dataset=label=clips,data_dir={videos},dataset={tiny_video_data.DATASET_NAME}",
            f"--output_dir={output_dir}",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    with open(output_dir / "matrix.json") as f:
        result = json.load(f)
    assert [m["label"] for m in result["models"]] == ["bright", "dark"]
    assert [d["label"] for d in result["datasets"]] == ["faces", "clips"]
    assert [d["has_videos"] for d in result["datasets"]] == [False, True]
    assert sorted(result["matrices"]) == ["eer", "roc_auc", "video_eer", "video_roc_auc"]
    for values in result["matrices"].values():
        assert len(values) == 2 and all(len(row) == 2 for row in values)  # [model][dataset]
    assert result["matrices"]["video_roc_auc"][0][0] is None  # an image dataset has no videos

    # Each cell equals what trainer.evaluate reports for that pair alone.
    exports = {"bright": plain, "dark": mirrored}
    datasets = {
        "faces": (images, "real_and_fake_faces"),
        "clips": (videos, tiny_video_data.DATASET_NAME),
    }
    for row, (model_label, export_dir) in enumerate(exports.items()):
        threshold = export.read_metadata(export_dir).threshold
        for column, (dataset_label, (data_dir, name)) in enumerate(datasets.items()):
            report = evaluate_lib.run(
                export_dir=export_dir,
                data_dir=data_dir,
                dataset=name,
                report_dir=str(tmp_path / f"{model_label}-{dataset_label}"),
                threshold=str(threshold),
            )
            cell = result["cells"][model_label][dataset_label]
            for key in ("roc_auc", "eer", "accuracy", "num_examples"):
                assert cell[key] == pytest.approx(report["metrics"][key], abs=1e-12), key
                if key in ("roc_auc", "eer"):
                    assert result["matrices"][key][row][column] == cell[key]
            videos_report = report["video_metrics"]
            assert cell["num_videos"] == report["num_videos"]
            for key in ("roc_auc", "eer", "accuracy"):
                expected = videos_report[key] if videos_report else None
                assert cell[f"video_{key}"] == pytest.approx(expected, abs=1e-12), key
            with open(report["scores_csv"]) as f:
                expected_rows = f.read()
            with open(output_dir / "scores" / f"{model_label}__{dataset_label}.csv") as f:
                assert f.read() == expected_rows
    # The mirrored model ranks the other way round: the matrix tells the two apart.
    assert result["cells"]["dark"]["faces"]["roc_auc"] == pytest.approx(
        1 - result["cells"]["bright"]["faces"]["roc_auc"]
    )

    with open(output_dir / "matrix.md") as f:
        text = f.read()
    assert "## video ROC-AUC (higher is better)" in text and "| model | faces | clips |" in text
    with Image.open(output_dir / "matrix.png") as picture:
        assert picture.format == "PNG" and picture.width > 400
    assert "frame ROC-AUC" in done.stdout and f"{output_dir / 'matrix.md'}" in done.stdout


def test_specs_are_parsed_and_bad_ones_named_before_any_scoring(prepared, tmp_path):
    root, images, videos, plain, mirrored = prepared
    assert matrix_lib.parse_model(str(root / "bright")) == matrix_lib.ModelSpec("bright", plain)
    assert matrix_lib.parse_model(f"r50={plain}") == matrix_lib.ModelSpec("r50", plain)
    assert matrix_lib.parse_model(mirrored).label == "dark"
    with pytest.raises(FileNotFoundError, match="neither an export"):
        matrix_lib.parse_model(str(tmp_path))
    assert matrix_lib.parse_dataset(images) == matrix_lib.DatasetSpec(
        "images", images, "real_and_fake_faces", "test"
    )
    assert matrix_lib.parse_dataset(f"data_dir={videos},split=validation,dataset=x,label=v") == (
        matrix_lib.DatasetSpec("v", videos, "x", "validation")
    )
    with pytest.raises(ValueError, match="'colour=red' is not KEY=VALUE"):
        matrix_lib.parse_dataset(f"data_dir={images},colour=red")

    out = str(tmp_path / "never")
    model = matrix_lib.parse_model(plain)
    with pytest.raises(ValueError, match="Two datasets are labelled \\['images'\\]"):
        matrix_lib.run([model], [matrix_lib.parse_dataset(images)] * 2, out)
    with pytest.raises(ValueError, match="Split 'dev' is not in"):
        matrix_lib.run([model], [matrix_lib.parse_dataset(f"data_dir={images},split=dev")], out)
    with pytest.raises(FileNotFoundError, match="tiny_video_faces.*holds: real_and_fake_faces;"):
        matrix_lib.run(
            [model], [matrix_lib.parse_dataset(f"data_dir={images},dataset=tiny_video_faces")], out
        )
    assert not os.path.exists(out)  # nothing scored, nothing written
