"""The whole build on the real Beam FnApiRunner and real TFDS, with bad inputs planted.

The planted set (tests/preprocessing/planted.py) holds one of every kind of
bad input next to normal synthetic images; each test builds it and checks
what became of every single input.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import schema
from preprocessing.building import archive, fingerprint
from preprocessing.building import summary as summary_lib
from preprocessing.real_and_fake_faces import sources
from tests import hostile_files
from tests.preprocessing import planted
from tfds_builder import build


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
    with tf.io.gfile.GFile(os.path.join(dataset_dir, summary_lib.REJECTS_FILENAME)) as f:
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
    table = summary_lib.format_table(result["summary"])
    assert "| train | real |" in table and "missing_file: 1" in table


def test_reports_never_copy_file_contents(planted_build):
    """A link to a file outside manual_dir is not followed, and nothing quotes its bytes."""
    root, _, result = planted_build
    rejects = _rejects(result["dataset_dir"])
    assert rejects["test/fake/outside_link.jpg"]["reason"] == "link_outside_input"
    assert "--allow_links_outside_input" in rejects["test/fake/outside_link.jpg"]["detail"]
    assert "same file as train/fake/" in rejects["valid/fake/link_to_train.jpg"]["detail"]
    # Text that is not an image is described, not quoted.
    assert "404" not in rejects["train/real/not_an_image.jpg"]["detail"]
    for name in os.listdir(result["dataset_dir"]):
        if name.endswith((".json", ".jsonl")):
            text = (root / "data").joinpath(result["dataset_dir"], name).read_bytes()
            assert planted.SECRET not in text, name
            assert b"<html>" not in text, name


def test_content_variants_are_configs_with_their_own_folders(planted_build, tmp_path):
    """--duplicates=drop builds config drop_duplicates beside keep_duplicates; both open by name."""
    root, _, kept = planted_build
    data_dir = tmp_path / "data"
    shutil.copytree(root / "data", data_dir)
    kept_dir = data_dir / os.path.relpath(kept["dataset_dir"], root / "data")
    dropped = _build(root / "raw", data_dir, duplicates="drop")
    assert dropped["dataset_dir"] == str(
        data_dir / schema.DATASET_NAME / "drop_duplicates" / "1.1.0"
    )
    assert kept_dir.parent.name == "keep_duplicates"
    rejects = _rejects(dropped["dataset_dir"])
    leak = rejects["test/real/leaked_copy.jpg"]
    assert leak["reason"] == "duplicate_across_splits"
    assert leak["duplicate_of"].startswith("train/real/")
    before, after = _examples(kept_dir), _examples(dropped["dataset_dir"])
    assert after["train"] == before["train"]  # The within-split copy stays.
    assert after["test"] == [e for e in before["test"] if e[0] != "test/real/leaked_copy.jpg"]
    assert dropped["summary"]["total"]["rejected"] == kept["summary"]["total"]["rejected"] + 1

    # What the trainer does: tfds.builder(name[/config], data_dir), without the builder's code.
    program = (
        "import sys, tensorflow_datasets as tfds\n"
        "for name in sys.argv[2:]:\n"
        "    b = tfds.builder(name, data_dir=sys.argv[1])\n"
        "    print(name, b.info.full_name, b.info.splits['test'].num_examples)\n"
    )
    opened = subprocess.run(
        [sys.executable, "-c", program, str(data_dir), "real_and_fake_faces"]
        + ["real_and_fake_faces/drop_duplicates", "real_and_fake_faces/keep_duplicates:1.1.0"],
        cwd=tmp_path,  # Not the repository: the builder's code cannot be imported.
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=""),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr[-2000:]
    assert opened.stdout.splitlines() == [
        f"real_and_fake_faces real_and_fake_faces/keep_duplicates/1.1.0 {len(before['test'])}",
        "real_and_fake_faces/drop_duplicates real_and_fake_faces/drop_duplicates/1.1.0 "
        f"{len(after['test'])}",
        "real_and_fake_faces/keep_duplicates:1.1.0 real_and_fake_faces/keep_duplicates/1.1.0 "
        f"{len(before['test'])}",
    ]


def _all_bad_but_one_per_class(tree):
    for seed, (split, class_name) in enumerate(
        (split, class_name) for split in ("train", "test") for class_name in ("real", "fake")
    ):
        folder = tree / split / class_name
        folder.mkdir(parents=True)
        for index in range(3):
            (folder / f"{index}.jpg").write_text("<html>Access denied</html>")
        # Distinct bytes per folder: one image under both labels would be a reject too.
        (folder / "ok.jpg").write_bytes(
            planted.encode(planted.Image.fromarray(planted._pixels(20 + seed)))
        )
    return tree


def test_failed_overwrite_keeps_the_previous_dataset_and_its_rejects(planted_build, tmp_path):
    root, _, kept = planted_build
    data_dir = tmp_path / "data"
    shutil.copytree(root / "data", data_dir)
    dataset_dir = data_dir / os.path.relpath(kept["dataset_dir"], root / "data")
    before = _examples(dataset_dir)
    bad = _all_bad_but_one_per_class(tmp_path / "bad")
    with pytest.raises(
        summary_lib.RejectFractionExceededError,
        match=r"75\.0% of 16 inputs.*not_an_image.*Likely cause: --manual_dir.*"
        r"if these rejects are expected, raise --max_reject_fraction\.$",
    ):
        _build(bad, data_dir, max_reject_fraction=0.5, overwrite=True)
    assert _examples(dataset_dir) == before  # The previous version is still there, unchanged.
    config_dir = dataset_dir.parent
    failed = (config_dir / "1.1.0.failed-rejects.jsonl").read_text().splitlines()
    assert len(failed) == 12
    assert sorted(os.listdir(config_dir)) == ["1.1.0", "1.1.0.failed-rejects.jsonl"]

    # Without --overwrite, other inputs are refused, naming what differs; the same are reused.
    with pytest.raises(
        fingerprint.InputsChangedError,
        match=r"other inputs.*built from .*raw, now .*bad.*inputs then, 16 now.*--overwrite",
    ):
        _build(bad, data_dir)
    again = _build(root / "raw", data_dir)
    assert again["action"] == "reused" and _examples(dataset_dir) == before


def test_first_build_that_fails_leaves_no_dataset(tmp_path):
    bad = _all_bad_but_one_per_class(tmp_path / "bad")
    with pytest.raises(summary_lib.RejectFractionExceededError):
        _build(bad, tmp_path / "data", max_reject_fraction=0.5)
    config_dir = tmp_path / "data" / schema.DATASET_NAME / "keep_duplicates"
    assert sorted(os.listdir(config_dir)) == ["1.1.0.failed-rejects.jsonl"]


def test_a_split_whose_inputs_are_all_rejected_fails_after_writing_its_rejects(tmp_path):
    # Issue 20: TFDS failed inside Beam ("total number of generated examples is 0 for
    # split validation"): tracebacks, no summary, no rejects.jsonl.
    tree = _all_bad_but_one_per_class(tmp_path / "raw")
    for class_name in ("real", "fake"):
        (tree / "valid" / class_name).mkdir(parents=True)
        (tree / "valid" / class_name / "page.jpg").write_text("<html>Access denied</html>")
    with pytest.raises(
        summary_lib.EmptySplitError,
        match=r"no examples for split validation \(2 input\(s\), all rejected\).*"
        r"not_an_image: 14.*failed-rejects\.jsonl",
    ):
        _build(tree, tmp_path / "data")
    config_dir = tmp_path / "data" / schema.DATASET_NAME / "keep_duplicates"
    assert sorted(os.listdir(config_dir)) == [
        "1.1.0.failed-rejects.jsonl",
        "1.1.0.failed-summary.json",
    ]
    rejects = [json.loads(line) for line in open(config_dir / "1.1.0.failed-rejects.jsonl")]
    assert {r["id"] for r in rejects if r["split"] == "validation"} == {
        "valid/real/page.jpg",
        "valid/fake/page.jpg",
    }
    summary = json.loads((config_dir / "1.1.0.failed-summary.json").read_text())
    assert summary["splits"]["train"]["real"]["written"] == 1


def test_wrong_manual_dir_fails_before_any_beam_work(tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    with pytest.raises(ValueError, match="holds no dataset"):
        _build(tmp_path, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def _kaggle_zip(tmp_path):
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
    return manual / "archive.zip"


def test_builds_from_the_kaggle_zip_given_as_manual_dir(tmp_path):
    zip_path = _kaggle_zip(tmp_path)
    with pytest.raises(archive.ArchiveTooLargeError, match="--max_extract_gb"):
        _build(zip_path, tmp_path / "data", max_extract_gb=1e-6)
    assert not list((tmp_path / "data").rglob("*.jpg"))  # Refused before extracting.

    result = _build(zip_path, tmp_path / "data")
    info = tfds.builder_from_directory(result["dataset_dir"]).info
    assert {k: v.num_examples for k, v in info.splits.items()} == {
        "train": 4,
        "validation": 2,
        "test": 2,
    }
    extraction = result["extraction"]
    assert extraction.folder.startswith(str(tmp_path / "data" / "downloads" / "extracted"))
    with zipfile.ZipFile(zip_path) as zipped:
        assert extraction.files == len(zipped.namelist()) and not extraction.reused
    assert os.path.isdir(extraction.folder)  # Kept for rebuilds; the build said where.
    # The folder holding the zip works too, and reuses the extraction.
    again = _build(zip_path.parent, tmp_path / "data")
    assert again["action"] == "reused" and again["extraction"].reused


def test_the_tfds_api_fails_above_the_same_reject_limit_and_says_how_to_raise_it(
    tmp_path, monkeypatch
):
    """tfds.builder(...).download_and_prepare() applies the launchers' 5% default.

    `~` in data_dir and manual_dir is expanded by the builder, as `tfds build` passes them.
    """
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=import-outside-toplevel

    from tfds_builder import beam_builder  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("HOME", str(tmp_path))
    _all_bad_but_one_per_class(tmp_path / "bad")
    builder = tfds.builder("real_and_fake_faces", data_dir="~/data")
    in_process = PipelineOptions(["--direct_running_mode=in_memory"])
    with pytest.raises(summary_lib.RejectFractionExceededError) as failed:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir="~/bad", beam_options=in_process
            )
        )
    message = str(failed.value)
    assert "75.0% of 16 inputs were rejected, more than max_reject_fraction=0.05" in message
    assert "dfd-build-dataset --max_reject_fraction=0.75" in message
    assert 'tfds.builder("real_and_fake_faces/keep_duplicates", max_reject_fraction=0.75' in message
    assert "tfds build real_and_fake_faces/keep_duplicates/max_reject_fraction=0.75" in message
    config_dir = tmp_path / "data" / schema.DATASET_NAME / "keep_duplicates"
    assert sorted(os.listdir(config_dir)) == ["1.1.0.failed-rejects.jsonl"]
    assert build.BuildConfig("in", "out").max_reject_fraction == (
        beam_builder.DEFAULT_MAX_REJECT_FRACTION
    )


def test_a_file_above_max_file_bytes_is_a_reject_read_from_its_size(tmp_path):
    tree = tmp_path / "tree"
    folders = [(split, name) for split in ("train", "test") for name in ("real", "fake")]
    for seed, (split, class_name) in enumerate(folders):
        folder = tree / split / class_name
        folder.mkdir(parents=True)
        for index in range(2):
            # Distinct bytes per folder: one image under both labels would be a reject too.
            pixels = planted._pixels(2 * seed + index)
            (folder / f"{index}.jpg").write_bytes(planted.encode(planted.Image.fromarray(pixels)))
    # A pre-allocated download cut short: a JPEG start, then 4 GB of zeros (sparse).
    hostile_files.jpeg_header_then_zeros(str(tree / "train" / "real" / "download.jpg"))
    result = _build(tree, tmp_path / "data", max_file_bytes=50_000_000)
    rejects = _rejects(result["dataset_dir"])
    assert rejects["train/real/download.jpg"]["reason"] == "file_too_large"
    assert "--max_file_bytes" in rejects["train/real/download.jpg"]["detail"]
    assert "file_too_large" in summary_lib.format_table(result["summary"])
