"""preprocessing.video_faces.sources: the three layouts, their split lists, and splits by group.

Listing opens no file, so the "videos" here are a few bytes each; the build tests
(tests/tfds_builder/test_video_build.py) use real clips.
"""

import collections
import json
import os
import uuid

import pytest

from preprocessing import schema
from preprocessing.building import inputs
from preprocessing.video_faces import sources as video_sources
from tests.deploy.conftest import PROJECT, free_port, start_emulator


def _touch(root, *relatives):
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"v" + relative.encode())  # Distinct bytes, never opened here.


def _listed(manual_dir, layout="auto", **options):
    found = video_sources.find_video_layout(str(manual_dir), layout)
    return found, {
        s.id: s for s in video_sources.list_videos(found, video_sources.SplitOptions(**options))
    }


FFPP_ORIGINALS = "original_sequences/youtube/c23/videos"
DEEPFAKES = "manipulated_sequences/Deepfakes/c23/videos"


@pytest.fixture
def ffpp(tmp_path):
    """FaceForensics++ one folder down, with distractors that must not be read."""
    root = tmp_path / "download" / "FaceForensics++"
    _touch(
        root,
        *(f"{FFPP_ORIGINALS}/{n}.mp4" for n in ("000", "001", "002", "003", "004")),
        "original_sequences/youtube/c40/videos/000.mp4",  # another compression
        *(f"{DEEPFAKES}/{n}.mp4" for n in ("000_001", "001_000", "002_003", "003_002")),
        f"{DEEPFAKES}/000_003.mp4",  # made from videos of two splits
        "manipulated_sequences/FaceSwap/c23/videos/002_003.mp4",
        "manipulated_sequences/Deepfakes/masks/videos/000_001.mp4",  # masks, not videos
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__walk__ABC.mp4",
        "original_sequences/actors/c23/videos/01__walk.mp4",
        f"{FFPP_ORIGINALS}/000.json",  # not named like a video
    )
    return tmp_path / "download", root


def test_faceforensics_official_lists_decide_splits_per_pair(ffpp):
    manual_dir, root = ffpp
    splits = manual_dir / "splits"
    splits.mkdir()
    (splits / "train.json").write_text(json.dumps([["000", "001"]]))
    (splits / "val.json").write_text("[]")
    (splits / "test.json").write_text(json.dumps([["003", "002"]]))
    layout, listed = _listed(manual_dir)
    assert (layout.kind, layout.root) == ("faceforensics", str(root))
    got = {
        i: (s.split, schema.LABEL_NAMES[s.label], s.source, s.problem) for i, s in listed.items()
    }
    assert got == {
        f"{FFPP_ORIGINALS}/000.mp4": ("train", "real", "youtube", ""),
        f"{FFPP_ORIGINALS}/001.mp4": ("train", "real", "youtube", ""),
        f"{FFPP_ORIGINALS}/002.mp4": ("test", "real", "youtube", ""),
        f"{FFPP_ORIGINALS}/003.mp4": ("test", "real", "youtube", ""),
        f"{FFPP_ORIGINALS}/004.mp4": ("train", "real", "youtube", "not_in_split_list"),
        f"{DEEPFAKES}/000_001.mp4": ("train", "fake", "Deepfakes", ""),
        f"{DEEPFAKES}/001_000.mp4": ("train", "fake", "Deepfakes", ""),
        f"{DEEPFAKES}/002_003.mp4": ("test", "fake", "Deepfakes", ""),
        f"{DEEPFAKES}/003_002.mp4": ("test", "fake", "Deepfakes", ""),
        f"{DEEPFAKES}/000_003.mp4": ("train", "fake", "Deepfakes", "split_conflict"),
        "manipulated_sequences/FaceSwap/c23/videos/002_003.mp4": ("test", "fake", "FaceSwap", ""),
    }
    conflict = listed[f"{DEEPFAKES}/000_003.mp4"]
    assert conflict.note == "000: train, 003: test"
    assert conflict.path == str(root / DEEPFAKES / "000_003.mp4")
    (splits / "val.json").write_text(json.dumps([["001", "005"]]))
    with pytest.raises(ValueError, match=r"Video 001 is in two split lists: .*train.json and"):
        _listed(manual_dir)
    (splits / "val.json").write_text('{"001": "005"}')
    with pytest.raises(ValueError, match=r"val.json is not a JSON list of \[id, id\] pairs"):
        _listed(manual_dir)


def test_faceforensics_without_lists_keeps_each_group_in_one_split(ffpp):
    manual_dir, _ = ffpp
    _, listed = _listed(manual_dir, ffpp_compression="c23", test_fraction=0.3)
    groups = collections.defaultdict(set)
    for source in listed.values():
        groups[source.group].add(source.split)
        assert not source.problem
    # 000-001 are linked by their manipulations, and 000_003 links them to 002-003.
    assert groups.keys() == {"faceforensics:000", "faceforensics:004"}
    assert all(len(splits) == 1 for splits in groups.values())
    _, again = _listed(manual_dir, ffpp_compression="c23", test_fraction=0.3)
    assert again == listed  # Stable: a hash of the group's name.
    _, c40 = _listed(manual_dir, ffpp_compression="c40")
    assert sorted(c40) == ["original_sequences/youtube/c40/videos/000.mp4"]
    with pytest.raises(ValueError, match=r"has no raw videos.*--ffpp_compression"):
        _listed(manual_dir, ffpp_compression="raw")


def test_celeb_df_test_list_is_followed_and_its_sources_kept_out_of_train(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    _touch(
        root,
        "Celeb-real/id0_0000.mp4",
        "Celeb-real/id0_0001.mp4",
        "Celeb-real/id1_0000.mp4",
        "Celeb-real/id2_0000.mp4",
        "Celeb-synthesis/videos/id0_id1_0000.mp4",  # one folder deeper: still found
        "Celeb-synthesis/videos/id1_id0_0000.mp4",
        "Celeb-synthesis/videos/id2_id0_0000.mp4",
        "Celeb-synthesis/videos/id0_id2_0001.mp4",
        "YouTube-real/00000.mp4",
        "YouTube-real/00001.mp4",
    )
    (root / "List_of_testing_videos.txt").write_text(
        "1 Celeb-real/id0_0000.mp4\n"
        "0 Celeb-synthesis/id1_id0_0000.mp4\n"
        "1 YouTube-real/00000.mp4\n"
        "1 Celeb-synthesis/id0_id2_0001.mp4\n"  # listed as real, but a fake
        "0 Celeb-synthesis/id9_id8_0000.mp4\n"  # not on disk
    )
    layout, listed = _listed(tmp_path, validation_fraction=0.5)
    assert (layout.kind, layout.root) == ("celeb_df", str(root))
    got = {
        i: (s.split, schema.LABEL_NAMES[s.label], s.source, s.problem) for i, s in listed.items()
    }
    test = {i: v for i, v in got.items() if v[0] == "test"}
    assert test == {
        "Celeb-real/id0_0000.mp4": ("test", "real", "celeb", ""),
        "Celeb-synthesis/videos/id1_id0_0000.mp4": ("test", "fake", "celeb_synthesis", ""),
        "YouTube-real/00000.mp4": ("test", "real", "youtube", ""),
        "Celeb-synthesis/videos/id0_id2_0001.mp4": (
            "test",
            "fake",
            "celeb_synthesis",
            "label_conflict",
        ),
        "Celeb-synthesis/id9_id8_0000.mp4": ("test", "fake", "celeb_synthesis", "missing_file"),
    }
    # Made from the source video of a test video (id0_0000, id1_0000, id0_0001): left out.
    for leak in (
        "Celeb-synthesis/videos/id0_id1_0000.mp4",
        "Celeb-real/id1_0000.mp4",
        "Celeb-real/id0_0001.mp4",
    ):
        assert got[leak][3] == "leaks_test_source", leak
    for kept in ("Celeb-real/id2_0000.mp4", "Celeb-synthesis/videos/id2_id0_0000.mp4"):
        assert got[kept][0] in ("train", "validation") and not got[kept][3], kept
    assert got["Celeb-real/id2_0000.mp4"][0] == got["Celeb-synthesis/videos/id2_id0_0000.mp4"][0]
    assert listed["Celeb-synthesis/videos/id0_id1_0000.mp4"].group == "celeb_df:id0_0000"

    (root / "List_of_testing_videos.txt").write_text("1 Celeb-real/id0_0000.mp4\n2 x.mp4\n")
    with pytest.raises(ValueError, match=r"List_of_testing_videos.txt, line 2: .*'2' is not 1"):
        _listed(tmp_path)
    os.remove(root / "List_of_testing_videos.txt")
    _, hashed = _listed(tmp_path, validation_fraction=0.3, test_fraction=0.3)
    by_group = collections.defaultdict(set)
    for source in hashed.values():
        by_group[source.group].add(source.split)
    assert all(len(splits) == 1 for splits in by_group.values())


def test_folders_layout_labels_sources_and_file_problems(tmp_path):
    manual_dir = tmp_path / "clips"
    _touch(
        manual_dir,
        "train/real/a.mp4",
        "train/real/deeper/b.MOV",
        "train/fake/Deepfakes/c.mp4",
        "train/fake/d.webm",
        "valid/real/e.mkv",
        "test/fake/FaceSwap/x/f.avi",
        "test/fake/notes.txt",
        "test/real/g.m4v",
    )
    os.mkfifo(manual_dir / "test" / "real" / "pipe.mp4")
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x")
    os.symlink(outside, manual_dir / "train" / "real" / "link.mp4")
    layout, listed = _listed(manual_dir)
    assert layout.kind == "folders"
    got = {
        i: (s.split, schema.LABEL_NAMES[s.label], s.source, s.problem) for i, s in listed.items()
    }
    assert got == {
        "train/real/a.mp4": ("train", "real", "real", ""),
        "train/real/deeper/b.MOV": ("train", "real", "deeper", ""),
        "train/real/link.mp4": ("train", "real", "real", inputs.LINK_OUTSIDE),
        "train/fake/Deepfakes/c.mp4": ("train", "fake", "Deepfakes", ""),
        "train/fake/d.webm": ("train", "fake", "fake", ""),
        "valid/real/e.mkv": ("validation", "real", "real", ""),
        "test/real/pipe.mp4": ("test", "real", "real", inputs.NOT_REGULAR_FILE),
        "test/real/g.m4v": ("test", "real", "real", ""),
        "test/fake/FaceSwap/x/f.avi": ("test", "fake", "FaceSwap", ""),
    }
    assert all(s.group == i for i, s in listed.items())  # Each video is its own group.


def test_layout_errors_name_what_was_expected(tmp_path, ffpp):
    manual_dir, _ = ffpp
    with pytest.raises(ValueError, match=r"It looks like the faceforensics layout"):
        video_sources.find_video_layout(str(manual_dir), "celeb_df")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        video_sources.find_video_layout(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no FaceForensics\+\+.*Found: \[\]"):
        video_sources.find_video_layout(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="--layout='youtube' is not"):
        video_sources.find_video_layout(str(manual_dir), "youtube")
    for bad, message in (
        ({"validation_fraction": 1.0}, "--validation_fraction=1.0 is not in"),
        ({"validation_fraction": 0.6, "test_fraction": 0.5}, "leave nothing for train"),
        ({"ffpp_compression": "c30"}, "--ffpp_compression='c30'"),
    ):
        with pytest.raises(ValueError, match=message):
            video_sources.SplitOptions(**bad).validate()


def test_hash_split_follows_the_fractions_and_never_changes():
    options = video_sources.SplitOptions(validation_fraction=0.2, test_fraction=0.1)
    splits = [video_sources.hash_split(f"group{i}", options) for i in range(2000)]
    counts = collections.Counter(splits)
    assert abs(counts["validation"] / 2000 - 0.2) < 0.03 and abs(counts["test"] / 2000 - 0.1) < 0.03
    assert splits == [video_sources.hash_split(f"group{i}", options) for i in range(2000)]
    two = [
        video_sources.hash_split(f"group{i}", options, ("train", "validation")) for i in range(200)
    ]
    assert set(two) == {"train", "validation"}


def test_listing_on_cloud_storage_is_recursive_with_sizes_and_checksums(monkeypatch):
    port = free_port()
    server = start_emulator(port)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        from preprocessing import gcs

        client = gcs.make_client(PROJECT)
        name = f"dfd-{uuid.uuid4().hex[:12]}"
        bucket = client.create_bucket(name)
        for relative, data in (
            ("raw/train/fake/Deepfakes/a.mp4", b"aaaa"),
            ("raw/train/fake/b.mp4", b"bb"),
            ("raw/train/fake/.hidden.mp4", b"x"),
            ("raw/train/fake/readme.txt", b"text"),
            ("raw/train/real/c.mp4", b"c"),
        ):
            bucket.blob(relative).upload_from_string(data)
        videos, others = video_sources._walk(f"gs://{name}/raw", "train/fake", False)
    finally:
        server.stop()
    assert [(f.relative, f.size) for f in videos] == [
        ("train/fake/Deepfakes/a.mp4", 4),
        ("train/fake/b.mp4", 2),
    ]
    assert all(f.crc32c for f in videos) and others == ["train/fake/readme.txt"]
