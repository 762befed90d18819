"""Grad-CAM: the layer it reads, where it looks, and predict --explain writing PNGs."""

import io
import os

import numpy as np
from PIL import Image
import pytest

from tests import media_samples
from tests.trainer import tiny_detector
from trainer import model as model_lib
from trainer.inference import explain, predict_lib


def test_default_layer_is_resnet50s_last_conv_block():
    model = model_lib.build_model("resnet50", image_size=32, weights="none")
    backbone, name = explain.find_target_layer(model)
    assert backbone is model_lib.backbone_of(model)
    assert name == "conv5_block3_out"


def test_heatmap_points_at_the_evidence(model_dir):
    # The tiny model's logit grows with brightness: on a grey face with one bright
    # corner, the evidence for "fake" is that corner and Grad-CAM must say so.
    model = explain.load_keras_model(os.path.join(model_dir, "model.keras"))
    cam = explain.GradCam(model)
    assert cam.layer_name == "last_conv"
    pixels = np.full((32, 32, 3), 140, np.uint8)
    pixels[:12, 20:] = 255
    heatmap, logit = cam.heatmap(pixels)
    assert logit > 0  # Called fake, so the map explains "fake".
    assert heatmap.shape == (16, 16)
    assert heatmap.min() >= 0.0 and heatmap.max() == pytest.approx(1.0)
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    assert row < 6 and column >= 10, (row, column)
    assert heatmap[:6, 10:].mean() > 2 * heatmap[8:, :8].mean()


def test_unknown_layer_and_missing_model_are_named(model_dir, tmp_path):
    model = explain.load_keras_model(os.path.join(model_dir, "model.keras"))
    with pytest.raises(ValueError, match="'nope' is not in model"):
        explain.GradCam(model, "nope")
    with pytest.raises(FileNotFoundError, match="--keras_model"):
        explain.load_keras_model(str(tmp_path / "model.keras"))


def test_predict_explain_writes_one_png_per_scored_image(model_dir, tmp_path):
    folder = tmp_path / "faces"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "a" / "face.jpg").write_bytes(tiny_detector.jpeg_bytes(200, seed=5))
    (folder / "b" / "face.jpg").write_bytes(tiny_detector.jpeg_bytes(60, seed=6))
    (folder / "readme.txt").write_text("skip me")
    out = str(tmp_path / "cams")
    outcome = predict_lib.run(
        os.path.join(model_dir, "export"), [str(folder)], explain=True, explain_dir=out
    )
    pngs = [png for _, png in outcome["explanations"]]
    assert [os.path.basename(png) for png in pngs] == ["face.gradcam.png", "face-2.gradcam.png"]
    for png in pngs:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width >= explain.DISPLAY_SIZE


def test_overlay_has_a_colour_scale():
    pixels = np.full((32, 32, 3), 128, np.uint8)
    heatmap = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    with Image.open(io.BytesIO(explain.overlay_png(pixels, heatmap, "title"))) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    strip = rgb[:, int(rgb.shape[1] * 0.85) :]  # Right of the Grad-CAM panel.
    # The colour bar shows the map's pure colours: jet's dark blue (0) and dark red (1).
    blue = (strip[..., 2] > 110) & (strip[..., 0] < 30) & (strip[..., 1] < 30)
    red = (strip[..., 0] > 110) & (strip[..., 2] < 30) & (strip[..., 1] < 30)
    assert blue.sum() > 20 and red.sum() > 20


def test_predict_explain_writes_one_png_per_face_of_a_photo(model_dir, tmp_path):
    photo = tmp_path / "group.jpg"
    photo.write_bytes(media_samples.encode(media_samples.group_photo()))
    outcome = predict_lib.run(
        os.path.join(model_dir, "export"),
        [str(photo)],
        explain=True,
        explain_dir=str(tmp_path / "cams"),
    )
    assert len(outcome["results"][0].details["faces"]) == 2
    names = sorted(os.path.basename(png) for _, png in outcome["explanations"])
    assert names == ["group.face0.gradcam.png", "group.face1.gradcam.png"]
