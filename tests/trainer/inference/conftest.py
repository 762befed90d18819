"""The tiny export every inference test scores with: one per test module (module scope),
so a module that edits its copy never disturbs another."""

import os

import pytest

from tests.trainer import tiny_detector


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """<model_dir> with export/ and model.keras of the tiny detector."""
    directory = str(tmp_path_factory.mktemp("model"))
    tiny_detector.export_tiny_detector(directory)
    return directory


@pytest.fixture(scope="module")
def export_dir(model_dir):
    return os.path.join(model_dir, "export")
