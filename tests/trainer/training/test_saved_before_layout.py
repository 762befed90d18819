"""Files written before the layout move still load, and a run left by it resumes after it.

tests/trainer/testdata/before_layout/model_dir was written by the trainer when
every module sat flat in `trainer/` (its README has the commit and the call):
`model.keras` names its layer class by module and registered name
(`trainer.model`, `dfd>ImagePreprocessing`), and `backup/` holds the training
model's weights with its loss-scale optimizer's state. The run is continued
here, one epoch more, with today's code.
"""

import json
import pathlib
import shutil

import keras
import numpy as np

from tests.trainer import tiny_data
from trainer import model as model_lib
from trainer.training import config as config_lib
from trainer.training import train_lib

BEFORE = pathlib.Path(__file__).resolve().parents[1] / "testdata" / "before_layout" / "model_dir"


def test_model_keras_and_best_checkpoint_load_in_safe_mode():
    for name in ("model.keras", "checkpoints/best.keras"):
        model = keras.models.load_model(BEFORE / name, compile=False, safe_mode=True)
        assert isinstance(model.get_layer("preprocessing"), model_lib.ImagePreprocessing)
        pixels = np.zeros((2, 32, 32, 3), np.uint8)
        assert model.predict(pixels, verbose=0).shape == (2, 1)


def test_the_run_resumes_from_its_backup_and_exports(tmp_path):
    model_dir = tmp_path / "model_dir"
    shutil.copytree(BEFORE, model_dir)
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=8, validation=4, test=4, size=40)
    saved = json.loads((model_dir / "config.json").read_text())
    saved.update(data_dir=data_dir, model_dir=str(model_dir))
    (model_dir / "config.json").write_text(json.dumps(saved))
    config = config_lib.TrainConfig(**{**saved, "epochs": 2})

    result = train_lib.run(config)

    assert result["status"].startswith("continuing at phase 0 (full) epoch 1 step 0"), result
    assert "epochs 1 -> 2" in result["status"]
    assert result["steps_trained"] == 2 and result["epochs_completed"] == 2
    assert (model_dir / "export" / "saved_model.pb").exists()
    reloaded = keras.models.load_model(model_dir / "model.keras", compile=False, safe_mode=True)
    assert isinstance(reloaded.get_layer("preprocessing"), model_lib.ImagePreprocessing)
