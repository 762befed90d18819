"""trainer.model and trainer.training.precision: the classifier, its phases, its dtype policy."""

import keras
import numpy as np
import pytest

from trainer import model as model_lib
from trainer.training import precision


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def resnet():
    keras.mixed_precision.set_global_policy("float32")
    return model_lib.build_model("resnet50", image_size=32, weights="none")


def test_model_takes_uint8_and_gives_one_float32_logit(resnet):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    logits = resnet(pixels, training=False)
    assert resnet.input.dtype == "uint8"
    assert logits.shape == (2, 1) and logits.dtype == "float32"


def test_preprocessing_layer_is_resnet50_preprocess_input():
    pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    ours = model_lib.ImagePreprocessing("caffe")(pixels.astype("uint8"))
    reference = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(np.asarray(ours), reference, atol=1e-4)
    tf_mode = model_lib.ImagePreprocessing("tf")(pixels.astype("uint8"))
    np.testing.assert_allclose(
        np.asarray(tf_mode), keras.applications.xception.preprocess_input(pixels.copy()), atol=1e-5
    )


@pytest.fixture(scope="module")
def tiny():
    keras.mixed_precision.set_global_policy("float32")
    return model_lib.build_model("tiny", image_size=32, weights="none")


def test_keras_file_round_trips_in_safe_mode(tiny, tmp_path):
    path = str(tmp_path / "m.keras")
    tiny.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    pixels = np.random.default_rng(2).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded(pixels), tiny(pixels, training=False), atol=1e-5)


def test_tiny_backbone_has_the_recipe_stages(tiny):
    base = model_lib.backbone_of(tiny)
    assert base.name == model_lib.TINY_BACKBONE and tiny.count_params() < 20_000
    model_lib.set_phase(tiny, model_lib.FINE_TUNE_PHASE)  # Default --fine_tune_from=conv4.
    assert {layer.name for layer in base.layers if layer.trainable} == {
        "conv4_conv",
        "conv4_relu",
        "conv5_conv",
        "conv5_relu",
    }
    model_lib.set_phase(tiny, model_lib.HEAD_PHASE)
    assert {v.path for v in tiny.trainable_variables} == {"logit/kernel", "logit/bias"}
    with pytest.raises(ValueError, match="tiny has no ImageNet weights"):
        model_lib.tiny_backbone(weights="imagenet")


def _trainable(layers):
    return [layer for layer in layers if layer.trainable]


def test_phases_freeze_what_the_recipe_says(resnet):
    base = model_lib.backbone_of(resnet)
    bn = keras.layers.BatchNormalization

    model_lib.set_phase(resnet, model_lib.HEAD_PHASE)
    assert not base.trainable
    assert {v.path for v in resnet.trainable_variables} == {"logit/kernel", "logit/bias"}

    model_lib.set_phase(resnet, model_lib.FINE_TUNE_PHASE, fine_tune_from="conv5")
    trained = _trainable(base.layers)
    assert trained and all(layer.name.startswith("conv5") for layer in trained)
    assert not any(isinstance(layer, bn) for layer in trained)
    assert all(not layer.trainable for layer in base.layers if layer.name.startswith("conv4"))

    model_lib.set_phase(resnet, model_lib.FULL_PHASE)
    assert all(layer.trainable for layer in base.layers)

    with pytest.raises(ValueError, match="conv4"):
        model_lib.set_phase(resnet, model_lib.FINE_TUNE_PHASE, fine_tune_from="conv9")


def test_local_weights_file_is_loaded(tiny, tmp_path):
    path = str(tmp_path / "backbone.weights.h5")
    model_lib.backbone_of(tiny).save_weights(path)
    again = model_lib.build_model("tiny", image_size=32, weights=path)
    np.testing.assert_array_equal(
        model_lib.backbone_of(again).weights[0].numpy(),
        model_lib.backbone_of(tiny).weights[0].numpy(),
    )
    with pytest.raises(FileNotFoundError, match="--weights"):
        model_lib.build_model("tiny", image_size=32, weights=str(tmp_path / "missing.h5"))


@pytest.mark.parametrize("backbone", ["xception", "efficientnetv2s"])
def test_other_backbones_build(backbone, float32_policy):
    model = model_lib.build_model(
        backbone, image_size=71 if backbone == "xception" else 32, weights="none"
    )
    size = model.input_shape[1]
    assert model(np.zeros((1, size, size, 3), np.uint8)).shape == (1, 1)
    model_lib.set_phase(
        model, model_lib.FINE_TUNE_PHASE, fine_tune_from=model_lib.STAGES[backbone][-1]
    )


@pytest.mark.parametrize(
    "asked, device, expected",
    [
        ("auto", "GPU", "mixed_float16"),
        ("auto", "TPU", "mixed_bfloat16"),
        ("auto", "CPU", "float32"),
        ("mixed_float16", "CPU", "mixed_float16"),
        ("float32", "GPU", "float32"),
    ],
)
def test_precision_policy_selection(asked, device, expected):
    assert precision.resolve(asked, device) == expected


def test_precision_rejects_unknown_values():
    with pytest.raises(ValueError, match="float8"):
        precision.resolve("float8", "GPU")
    with pytest.raises(ValueError, match="'NPU'"):
        precision.resolve("auto", "NPU")


def test_logit_layer_stays_float32_under_mixed_float16(float32_policy):
    assert precision.set_policy("mixed_float16", "CPU") == "mixed_float16"
    model = model_lib.build_model("resnet50", image_size=32, weights="none")
    assert model.get_layer(model_lib.LOGIT_LAYER).dtype_policy.name == "float32"
    assert model.get_layer("preprocessing").compute_dtype == "float32"
    assert model_lib.backbone_of(model).layers[-1].compute_dtype == "float16"
    assert model(np.zeros((1, 32, 32, 3), np.uint8)).dtype == "float32"
