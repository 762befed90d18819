"""The whole build on the real Beam FnApiRunner and real TFDS, with bad inputs planted.

The planted set (tests/preprocessing/planted.py) holds one of every kind of
bad input next to normal synthetic images; each test builds it and checks
what became of every single input.
"""

import json
import os
import shutil
import zipfile

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import build, report, schema, sources
from tests.preprocessing import planted


def _build(manual_dir, data_dir, **overrides):
    values = dict(
        manual_dir=str(manual_dir),
        data_dir=str(data_dir),
        running_mode="in_memory",
        max_reject_fraction=None,
    )
    values.update(overrides)
    return build.run(build.BuildConfig(**values))


def _examples(dataset_dir):
    """{split: [(id, label, image bytes, sha256, filename)]} in the stored order."""
    builder = tfds.builder_from_directory(dataset_dir)
    result = {}
    for split in builder.info.splits:
        dataset = builder.as_dataset(
            split=split, shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
        )
        result[split] = [
            (
                e[schema.ID].decode(),
                int(e[schema.LABEL]),
                e[schema.IMAGE],
                e[schema.SHA256].decode(),
                e[schema.FILENAME].decode(),
            )
            for e in tfds.as_numpy(dataset)
        ]
    return result


def _rejects(dataset_dir):
    with tf.io.gfile.GFile(os.path.join(dataset_dir, report.REJECTS_FILENAME)) as f:
        return {r["id"]: r for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def planted_build(tmp_path_factory):
    """Builds the planted set once (in-process runner, duplicates kept)."""
    root = tmp_path_factory.mktemp("planted")
    expected = planted.make_planted(str(root / "raw"))
    result = _build(root / "raw", root / "data")
    return root, expected, result


def test_every_planted_input_is_written_or_rejected_with_its_reason(planted_build):
    _, expected, result = planted_build
    dataset_dir = result["dataset_dir"]
    rejects = _rejects(dataset_dir)
    written = {example[0] for split in _examples(dataset_dir).values() for example in split}
    for input_id, (outcome, reason, _) in expected.items():
        if outcome == "rejected":
            assert input_id in rejects, input_id
            assert rejects[input_id]["reason"] == reason, (input_id, rejects[input_id])
            assert input_id not in written
        else:
            assert input_id in written, input_id
            assert input_id not in rejects
    for record in rejects.values():
        assert {"path", "split", "reason"} <= set(record)
        assert record["path"].endswith(record["id"])


def test_inputs_read_equal_examples_written_plus_rejects(planted_build):
    root, _, result = planted_build
    dataset_dir = result["dataset_dir"]
    listed = sources.list_sources(sources.find_layout(str(root / "raw")))
    info = tfds.builder_from_directory(dataset_dir).info
    written = sum(split.num_examples for split in info.splits.values())
    rejects = _rejects(dataset_dir)
    total = result["summary"]["total"]
    assert total["read"] == len(listed)  # CSV rows and files on disk, each once.
    assert total["read"] == written + len(rejects)
    assert total["written"] == written and total["rejected"] == len(rejects)
    for split, labels in result["summary"]["splits"].items():
        assert sum(row["written"] for row in labels.values()) == info.splits[split].num_examples
        for row in labels.values():
            assert row["read"] == row["written"] + row["rejected"]


def test_valid_jpegs_keep_their_bytes_and_others_are_converted(planted_build):
    root, expected, result = planted_build
    image_root = root / "raw" / planted.IMAGE_ROOT
    records = {}
    for split_examples in _examples(result["dataset_dir"]).values():
        for input_id, label, image, sha256, filename in split_examples:
            records[input_id] = (label, image)
            assert tf.io.gfile.exists(str(image_root / input_id))
            assert filename == os.path.basename(input_id)
            assert sha256 == __import__("hashlib").sha256(image).hexdigest()
            original = (image_root / input_id).read_bytes()
            conversion = expected.get(input_id, ("", "", ""))[2]
            if "->" in conversion or "exif" in conversion:
                assert image != original
                assert tf.io.decode_jpeg(image).shape[-1] == 3
            else:
                assert image == original, input_id  # Bit-exact.
    assert tf.io.decode_jpeg(records["valid/real/exif_rotated.jpg"][1]).shape == (40, 24, 3)


def test_labels_follow_the_folders_real_zero_fake_one(planted_build):
    _, _, result = planted_build
    for split_examples in _examples(result["dataset_dir"]).values():
        for input_id, label, *_ in split_examples:
            assert label == (schema.REAL if "/real/" in input_id else schema.FAKE), input_id
    info = tfds.builder_from_directory(result["dataset_dir"]).info
    assert info.features[schema.LABEL].names == ["real", "fake"]


def test_summary_reports_duplicates_and_conversions(planted_build):
    _, _, result = planted_build
    splits = result["summary"]["splits"]
    assert splits["train"]["fake"]["duplicates"] == 1  # copy_in_train.jpg
    assert splits["test"]["real"]["duplicates"] == 1  # leaked_copy.jpg (kept)
    assert splits["train"]["fake"]["converted"] == 2  # PNG, CMYK
    assert splits["train"]["real"]["converted"] == 1  # grayscale
    assert splits["validation"]["real"]["converted"] == 1  # EXIF
    table = report.format_table(result["summary"])
    assert "| train | real |" in table and "missing_file: 1" in table


def test_same_inputs_same_examples_in_same_order_with_two_worker_processes(planted_build, tmp_path):
    """The default local runner (2 processes) gives what the in-process run gave."""
    root, _, result = planted_build
    again = _build(root / "raw", tmp_path / "data", running_mode="multi_processing", num_workers=2)
    assert again["runner"] == "FnApiRunner"
    assert _examples(again["dataset_dir"]) == _examples(result["dataset_dir"])
    assert _rejects(again["dataset_dir"]) == _rejects(result["dataset_dir"])


def test_duplicates_drop_removes_the_leaked_copy_only(planted_build, tmp_path):
    root, _, kept = planted_build
    dropped = _build(root / "raw", tmp_path / "data", duplicates="drop")
    rejects = _rejects(dropped["dataset_dir"])
    leak = rejects["test/real/leaked_copy.jpg"]
    assert leak["reason"] == "duplicate_across_splits"
    assert leak["duplicate_of"].startswith("train/real/")
    before, after = _examples(kept["dataset_dir"]), _examples(dropped["dataset_dir"])
    assert after["train"] == before["train"]  # The within-split copy stays.
    assert after["test"] == [e for e in before["test"] if e[0] != "test/real/leaked_copy.jpg"]
    assert dropped["summary"]["total"]["rejected"] == kept["summary"]["total"]["rejected"] + 1


def test_too_many_rejects_fail_with_the_likely_cause_and_keep_the_rejects(tmp_path):
    tree = tmp_path / "raw"
    for split in ("train", "test"):
        for class_name in ("real", "fake"):
            folder = tree / split / class_name
            folder.mkdir(parents=True)
            for index in range(3):
                (folder / f"{index}.jpg").write_text("<html>Access denied</html>")
            (folder / "ok.jpg").write_bytes(
                planted.encode(planted.Image.fromarray(planted._pixels(index)))
            )
    with pytest.raises(
        report.RejectFractionExceededError,
        match=r"75\.0% of 16 inputs.*not_an_image.*Likely cause: --manual_dir",
    ):
        _build(tree, tmp_path / "data", max_reject_fraction=0.5)
    dataset_parent = tmp_path / "data" / schema.DATASET_NAME
    assert not (dataset_parent / "1.0.0").exists()  # No suspect dataset left to train on.
    failed = (dataset_parent / "1.0.0.failed-rejects.jsonl").read_text().splitlines()
    assert len(failed) == 12


def test_wrong_manual_dir_fails_before_any_beam_work(tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    with pytest.raises(ValueError, match="holds no dataset"):
        _build(tmp_path, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_builds_from_the_kaggle_zip(tmp_path):
    from preprocessing import synthetic  # pylint: disable=import-outside-toplevel

    raw = tmp_path / "extracted"
    synthetic.write_dataset(str(raw), 16, {"train": 2, "valid": 1, "test": 1}, seed=4)
    manual = tmp_path / "manual"
    manual.mkdir()
    with zipfile.ZipFile(manual / "archive.zip", "w") as archive:
        for folder, _, files in os.walk(raw):
            for name in files:
                full = os.path.join(folder, name)
                archive.write(full, os.path.relpath(full, raw))
    shutil.rmtree(raw)
    result = _build(manual, tmp_path / "data")
    info = tfds.builder_from_directory(result["dataset_dir"]).info
    assert {k: v.num_examples for k, v in info.splits.items()} == {
        "train": 4,
        "validation": 2,
        "test": 2,
    }
