"""The export is not trusted blindly (issue 20, items 1 and 2): detector.json values, the
SavedModel signature and every --threshold are checked when a tool starts, in one line."""

import math
import os
import shutil
import subprocess
import sys

from absl import logging
import pytest
import tensorflow as tf

from preprocessing import schema
from tests import hostile_files
from tests.trainer import tiny_detector
from trainer import export
from trainer.inference import scoring

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def good_export(tmp_path_factory):
    return tiny_detector.export_tiny_detector(str(tmp_path_factory.mktemp("model")))


@pytest.fixture()
def export_copy(good_export, tmp_path):
    return shutil.copytree(good_export, str(tmp_path / "export"))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"image_size": 100000}, "key 'image_size' is 100000, outside \\[16, 1024\\]"),
        ({"image_size": "224"}, "key 'image_size' is '224', not an integer"),
        ({"threshold": "abc"}, "key 'threshold': 'abc' is not a number"),
        ({"threshold": None}, "key 'threshold': None is not a number"),
        ({"threshold": 2.0}, "key 'threshold': 2.0 is outside \\[0, 1\\]"),
        ({"threshold": math.nan}, "key 'threshold': nan is outside"),
        ({"threshold": -1}, "key 'threshold': -1.0 is outside"),
        ({"image_size": ...}, "required key 'image_size' is missing"),
        ({"label_names": ["fake", "real"]}, "key 'label_names'"),
        ({"threshold_source": 3}, "key 'threshold_source' is 3, not a string"),
        ({"validation_auc": 1.5}, "key 'validation_auc' is 1.5, not a number in \\[0, 1\\]"),
        ({"validation_eer": "low"}, "key 'validation_eer' is 'low', not a number"),
        ({"dataset": ["a"]}, "key 'dataset' is \\['a'\\], not a string"),
    ],
)
def test_bad_detector_json_is_refused_naming_the_file_and_key(export_copy, changes, message):
    hostile_files.edit_detector_json(export_copy, **changes)
    with pytest.raises(export.InvalidExportError, match=message) as raised:
        export.read_metadata(export_copy)
    assert "detector.json" in str(raised.value) and "\n" not in str(raised.value)


def test_garbage_detector_json_and_unknown_keys(export_copy, monkeypatch):
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda *args: warnings.append(args[0] % args[1:]))
    hostile_files.edit_detector_json(export_copy, extra_key=1)
    assert export.read_metadata(export_copy).image_size == tiny_detector.IMAGE_SIZE
    assert any("unknown key 'extra_key'" in line for line in warnings)
    with open(os.path.join(export_copy, "detector.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(export.InvalidExportError, match="is not valid JSON"):
        export.read_metadata(export_copy)


@pytest.mark.parametrize("value", [1.5, -0.5, math.nan, math.inf, "0.5", True])
def test_threshold_values_outside_a_probability_are_refused(value):
    with pytest.raises(ValueError, match="--threshold"):
        schema.check_threshold(value, "--threshold")
    assert schema.check_threshold(0.25, "--threshold") == 0.25


def test_threshold_override_is_checked_by_the_detector(good_export):
    with pytest.raises(ValueError, match="--threshold: 1.5 is outside"):
        scoring.Detector(good_export, threshold=1.5)


class _Foreign(tf.Module):
    """A SavedModel that is not a detector of this project."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="data")])
    def wrong_input(self, data):
        return {"p_fake": tf.zeros([tf.shape(data)[0]])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def three_outputs(self, images):
        return {"p_fake": tf.zeros([tf.shape(images)[0], 3])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def other_output(self, images):
        return {"scores": tf.zeros([tf.shape(images)[0]])}


@pytest.mark.parametrize(
    "signature, message",
    [
        ("wrong_input", "takes \\['data'\\], not one input 'images'"),
        ("three_outputs", "output 'p_fake' is float32\\[None, 3\\], not float32"),
        ("other_output", "returns \\['scores'\\], not 'p_fake'"),
    ],
)
def test_foreign_savedmodel_is_refused_at_load(good_export, tmp_path, signature, message):
    module = _Foreign()
    folder = str(tmp_path / signature)
    tf.saved_model.save(module, folder, signatures={"serving_default": getattr(module, signature)})
    shutil.copy(os.path.join(good_export, "detector.json"), folder)
    with pytest.raises(export.InvalidExportError, match=message):
        scoring.Detector(folder)
    with pytest.raises(export.InvalidExportError, match=message):
        export.load_scorer(folder)


def _predict(*args):
    return subprocess.run(
        [sys.executable, "-m", "trainer.predict", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_command_line_says_one_line_before_any_work(export_copy, tmp_path):
    image = tmp_path / "face.jpg"
    image.write_bytes(tiny_detector.jpeg_bytes(100))
    bad_flag = _predict(f"--export_dir={export_copy}", "--threshold=nan", str(image))
    assert bad_flag.returncode == 1
    assert "--threshold: nan is outside [0, 1]" in bad_flag.stderr
    hostile_files.edit_detector_json(export_copy, image_size=100000)
    bad_json = _predict(f"--export_dir={export_copy}", str(image))
    assert bad_json.returncode == 1
    assert "key 'image_size' is 100000" in bad_json.stderr
    (tmp_path / "out.csv").mkdir()
    folder_output = _predict(
        f"--export_dir={export_copy}", f"--output={tmp_path / 'out.csv'}", str(image)
    )
    assert folder_output.returncode == 1
    assert "is a folder; give a file name" in folder_output.stderr
    for completed in (bad_flag, bad_json, folder_output):
        assert "Traceback" not in completed.stderr and completed.stdout == ""
        assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr


def test_model_card_keys_are_read_and_may_be_absent_or_null(export_copy):
    assert export.read_metadata(export_copy).validation_auc is None  # Older exports.
    card = {"dataset": "real_and_fake_faces", "exported_at": "2026-12-02T10:00:00+00:00"}
    hostile_files.edit_detector_json(export_copy, validation_auc=0.75, validation_eer=None, **card)
    metadata = export.read_metadata(export_copy)
    assert (metadata.dataset, metadata.exported_at) == (card["dataset"], card["exported_at"])
    assert (metadata.validation_auc, metadata.validation_eer) == (0.75, None)
