"""preprocessing.synthetic: Kaggle layout, determinism, and a task that can be learned."""

import csv
import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from preprocessing import schema, synthetic
from trainer import export


def _digest_tree(root):
    digest = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            digest[os.path.relpath(path, root)] = hashlib.sha256(
                open(path, "rb").read()
            ).hexdigest()
    return digest


def test_writes_the_kaggle_layout_and_csv_convention(tmp_path):
    written = synthetic.write_dataset(str(tmp_path), 16, {"train": 3, "valid": 2, "test": 1})
    assert written == {"train": 6, "valid": 4, "test": 2}
    image_root = tmp_path / "real_vs_fake" / "real-vs-fake"
    for folder, count in (("train", 3), ("valid", 2), ("test", 1)):
        for class_name in ("real", "fake"):
            assert len(os.listdir(image_root / folder / class_name)) == count
        with open(tmp_path / f"{folder}.csv", encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert lines[0] == ",original_path,id,label,label_str,path"
        rows = list(csv.DictReader(lines))
        assert len(rows) == 2 * count
        for row in rows:
            assert row["label"] == ("1" if row["label_str"] == "real" else "0")
            assert row["path"] == f"{folder}/{row['label_str']}/{row['id']}.jpg"
            assert (image_root / row["path"]).is_file()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    counts = {"train": 2, "valid": 1, "test": 1}
    synthetic.write_dataset(str(tmp_path / "a"), 16, counts, seed=5)
    synthetic.write_dataset(str(tmp_path / "b"), 16, counts, seed=5)
    synthetic.write_dataset(str(tmp_path / "c"), 16, counts, seed=6)
    assert _digest_tree(tmp_path / "a") == _digest_tree(tmp_path / "b")
    assert _digest_tree(tmp_path / "a") != _digest_tree(tmp_path / "c")


def test_parse_counts_accepts_named_or_single_and_names_bad_parts():
    assert synthetic.parse_counts("train=5,validation=2,test=1") == {
        "train": 5,
        "valid": 2,
        "test": 1,
    }
    assert synthetic.parse_counts("7") == {"train": 7, "valid": 7, "test": 7}
    with pytest.raises(ValueError, match="'dev=3'"):
        synthetic.parse_counts("train=5,dev=3")


def _spectral_features(jpeg: bytes) -> np.ndarray:
    """Log-magnitude spectrum of the trainer's evaluation view, pooled to 16x16."""
    pixels = export.decode_for_eval(tf.constant(jpeg), 64).numpy().astype(np.float32)
    gray = pixels.mean(axis=-1)
    spectrum = np.log1p(np.abs(np.fft.fft2(gray - gray.mean())))
    return spectrum.reshape(16, 4, 16, 4).mean(axis=(1, 3)).ravel()


def _logistic_regression(x, y, steps=400, rate=0.2, l2=1e-2):
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        w -= rate * (x.T @ (p - y) / len(y) + l2 * w)
        b -= rate * float(np.mean(p - y))
    return w, b


def test_fake_fingerprint_is_learnable_and_content_is_not():
    """A linear model on spectra separates the classes; with shuffled labels it cannot.

    Uses the trainer's own evaluation view (centre crop 0.875, resize to 64), so
    the fingerprint is shown to survive the rescaling the demo applies.
    """

    def images(split_index, count):
        x, y = [], []
        for label in (schema.REAL, schema.FAKE):
            for index in range(count):
                rng = np.random.default_rng([99, split_index, label, index])
                x.append(_spectral_features(synthetic.make_image(rng, 64, label)))
                y.append(label)
        return np.array(x), np.array(y, dtype=np.float64)

    x_train, y_train = images(0, 80)
    x_test, y_test = images(1, 40)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    w, b = _logistic_regression(x_train, y_train)
    accuracy = np.mean(((x_test @ w + b) > 0) == y_test)
    shuffled = np.random.default_rng(0).permutation(y_train)
    w, b = _logistic_regression(x_train, shuffled)
    chance = np.mean(((x_test @ w + b) > 0) == y_test)
    print(f"accuracy={accuracy:.3f} shuffled={chance:.3f}")
    assert accuracy >= 0.9, accuracy
    assert chance <= 0.7, chance
