"""real_and_fake_faces.sources: finding the inputs, CSV reconciliation, label conversion."""

import csv
import os
import shutil
import zipfile

import pytest

from preprocessing import schema, synthetic
from preprocessing.building import inputs
from preprocessing.real_and_fake_faces import sources
from tests.preprocessing import planted


@pytest.fixture(scope="module")
def kaggle_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("kaggle"))
    synthetic.write_dataset(root, 16, {"train": 2, "valid": 1, "test": 1}, seed=3)
    return root


def test_kaggle_layout_is_found_with_its_csvs(kaggle_dir):
    layout = sources.find_layout(kaggle_dir)
    assert layout.image_root == os.path.join(kaggle_dir, "real_vs_fake/real-vs-fake")
    assert layout.split_folders == {"train": "train", "validation": "valid", "test": "test"}
    assert set(layout.csvs) == {"train", "validation", "test"}
    assert layout.zip_path is None


def test_csv_labels_are_converted_from_kaggle_one_is_real(kaggle_dir):
    listed = sources.list_sources(sources.find_layout(kaggle_dir))
    assert len(listed) == 2 * (2 + 1 + 1)
    assert all(not s.problem for s in listed)
    for source in listed:
        expected = schema.REAL if "/real/" in source.id else schema.FAKE
        assert source.label == expected
    with open(os.path.join(kaggle_dir, "train.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    real_rows = [r for r in rows if r["label_str"] == "real"]
    assert real_rows and all(r["label"] == "1" for r in real_rows)  # Kaggle's convention.
    assert schema.label_from_kaggle_csv("1") == schema.REAL == 0
    assert schema.label_from_kaggle_csv(0) == schema.FAKE == 1


def test_valid_folder_is_the_validation_split_and_ids_are_relative(kaggle_dir):
    listed = sources.list_sources(sources.find_layout(kaggle_dir))
    validation = [s for s in listed if s.split == "validation"]
    assert validation and all(s.id.startswith("valid/") for s in validation)
    assert all(s.path.endswith(s.id) for s in listed)
    assert [s.id for s in listed] == sorted(s.id for s in listed)


def test_csv_and_folders_are_reconciled(tmp_path):
    root = str(tmp_path / "raw")
    expected = planted.make_planted(root)
    listed = {s.id: s for s in sources.list_sources(sources.find_layout(root))}
    assert listed["train/real/missing.jpg"].problem == inputs.MISSING_FILE
    assert listed["test/real/not_in_csv.jpg"].problem == sources.NOT_IN_CSV
    assert listed["test/real/not_in_csv.jpg"].label == schema.REAL  # From its folder.
    assert set(expected) <= set(listed)
    # test.csv starts with a byte-order mark: its rows are read like the others.
    assert not [s for s in listed.values() if s.split == "test" and s.problem == "missing_file"]
    # The same file listed twice with both labels is a reject, not a silent drop.
    conflict = listed["valid/fake/csv_conflict.jpg"]
    assert conflict.problem == sources.CONFLICTING_CSV_ROWS and "valid.csv lines" in conflict.note
    # Sizes are recorded for the fingerprint, without opening the files.
    assert listed["train/fake/trailing_bytes.jpg"].size == len(planted.with_trailing_bytes())


def test_only_regular_files_are_inputs_and_each_file_is_read_once(tmp_path):
    root = str(tmp_path / "raw")
    planted.make_planted(root)
    listed = {s.id: s for s in sources.list_sources(sources.find_layout(root))}
    assert listed["train/real/named_pipe.jpg"].problem == inputs.NOT_REGULAR_FILE
    assert listed["train/fake/loop_a.jpg"].problem == inputs.BROKEN_LINK
    assert listed["test/fake/outside_link.jpg"].problem == inputs.LINK_OUTSIDE
    linked = listed["valid/fake/link_to_train.jpg"]
    assert linked.problem == inputs.LINKED_COPY and linked.note.startswith("same file as train/")
    assert not listed[linked.note.removeprefix("same file as ")].problem  # The file itself.

    followed = {
        s.id: s for s in sources.list_sources(sources.find_layout(root), allow_links_outside=True)
    }
    assert followed["test/fake/outside_link.jpg"].problem == ""
    assert followed["test/fake/outside_link.jpg"].size == len(planted.SECRET)


def test_folder_links_never_make_a_file_read_twice(tmp_path, kaggle_dir):
    root = tmp_path / "tree"
    shutil.copytree(os.path.join(kaggle_dir, "real_vs_fake/real-vs-fake"), root)
    os.symlink("..", root / "train" / "real" / "loop")  # train/real/loop/real/loop/...
    shutil.rmtree(root / "test" / "fake")
    os.symlink(os.path.join("..", "train", "fake"), root / "test" / "fake")
    listed = {s.id: s for s in sources.list_sources(sources.find_layout(str(root)))}
    linked = {i: s for i, s in listed.items() if i.startswith("test/fake/")}
    assert len(linked) == 2
    assert all(s.problem == inputs.LINKED_COPY for s in linked.values())
    assert not [s for i, s in listed.items() if s.problem and i not in linked]
    # 2 + 2 train, 1 + 1 valid, 1 test/real, 2 linked: the loop link is a folder, not listed.
    assert len(listed) == 9


def test_label_conflict_between_csv_and_folder_is_a_problem(tmp_path, kaggle_dir):
    root = str(tmp_path / "raw")
    shutil.copytree(kaggle_dir, root)
    path = os.path.join(root, "test.csv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[1][3] = "0" if rows[1][3] == "1" else "1"  # Flip one CSV label.
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)
    listed = {s.id: s for s in sources.list_sources(sources.find_layout(root))}
    assert listed[rows[1][5]].problem == inputs.LABEL_CONFLICT


def test_plain_split_tree_without_csvs_uses_the_folders(tmp_path, kaggle_dir):
    root = tmp_path / "tree"
    shutil.copytree(os.path.join(kaggle_dir, "real_vs_fake/real-vs-fake"), root)
    os.rename(root / "valid", root / "validation")
    (root / "train" / "real" / ".DS_Store").write_bytes(b"litter")
    layout = sources.find_layout(str(root))
    assert layout.image_root == str(root) and layout.csvs == {}
    listed = sources.list_sources(layout)
    assert {s.split for s in listed} == {"train", "validation", "test"}
    assert not any(".DS_Store" in s.id for s in listed)
    assert len(listed) == 8


def test_zip_is_found_when_there_is_no_extracted_folder(tmp_path, kaggle_dir):
    zip_path = tmp_path / "archive.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for folder, _, files in os.walk(kaggle_dir):
            for name in files:
                full = os.path.join(folder, name)
                archive.write(full, os.path.relpath(full, kaggle_dir))
    layout = sources.find_layout(str(tmp_path))
    assert layout.image_root is None and layout.zip_path == str(zip_path)
    # The zip itself works as manual_dir too; another file does not.
    assert sources.find_layout(str(zip_path)).zip_path == str(zip_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder or a .zip"):
        sources.find_layout(str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="not a valid Cloud Storage URL"):
        sources.find_layout("gs:/bucket/raw")


def test_downloads_folder_with_the_zip_and_its_extracted_folder_uses_the_folder_and_its_csvs(
    tmp_path, kaggle_dir, caplog
):
    """Downloads/{archive.zip, 140k-real-and-fake-faces/{real_vs_fake/..., *.csv}}."""
    downloads = tmp_path / "Downloads"
    shutil.copytree(kaggle_dir, downloads / "140k-real-and-fake-faces")
    (downloads / "archive.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # An empty zip.
    layout = sources.find_layout(str(downloads))
    extracted = downloads / "140k-real-and-fake-faces"
    assert layout.image_root == str(extracted / "real_vs_fake" / "real-vs-fake")
    assert layout.csvs == {
        "train": str(extracted / "train.csv"),
        "validation": str(extracted / "valid.csv"),
        "test": str(extracted / "test.csv"),
    }
    assert layout.zip_path is None and layout.unused_zips == (str(downloads / "archive.zip"),)
    with caplog.at_level("INFO", logger="absl"):
        sources.list_sources(layout)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Images from")]
    assert line == (
        f"Images from {layout.image_root} (split CSVs: {extracted / 'train.csv'}, "
        f"{extracted / 'valid.csv'}, {extracted / 'test.csv'}); "
        f"not used: {downloads / 'archive.zip'} beside it."
    )


def test_missing_manual_dir_names_it_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="does_not_exist.*Fix"):
        sources.find_layout(str(tmp_path / "does_not_exist"))


def test_folder_without_a_dataset_says_what_was_expected(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ValueError, match=r"holds no dataset.*real_vs_fake.*Found: \['photos'\]"):
        sources.find_layout(str(tmp_path))


def test_a_csv_saved_with_a_byte_order_mark_is_read(tmp_path, kaggle_dir):
    """Spreadsheets write UTF-8 with a BOM; with `path` first it used to read '\ufeffpath'."""
    root = str(tmp_path / "raw")
    shutil.copytree(kaggle_dir, root)
    path = os.path.join(root, "train.csv")
    with open(path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", encoding="utf-8-sig", newline="") as f:  # BOM first.
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "label"])
        writer.writerows([row["path"], row["label"]] for row in rows)
    listed = sources.list_sources(sources.find_layout(root))
    train = [s for s in listed if s.split == "train"]
    assert len(train) == len(rows) and not [s for s in train if s.problem]


def test_bad_csv_header_is_named(tmp_path, kaggle_dir):
    root = str(tmp_path / "raw")
    shutil.copytree(kaggle_dir, root)
    with open(os.path.join(root, "train.csv"), "w", encoding="utf-8") as f:
        f.write("file,class\nx.jpg,1\n")
    with pytest.raises(ValueError, match=r"train\.csv has no \['label', 'path'\]"):
        sources.list_sources(sources.find_layout(root))
