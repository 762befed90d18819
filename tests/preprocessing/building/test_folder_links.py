"""One link rule for both builds: a folder that is a link out of --manual_dir is not followed.

Issue 20: the video build followed a class folder, a split folder or a layout root
that is a symbolic link out of --manual_dir (only linked files were rejected),
while the image build rejected what it found there as `link_outside_input`.
Listing opens no file, so the inputs are a few bytes each.
"""

import os

import pytest

from preprocessing.building import inputs
from preprocessing.real_and_fake_faces import sources as image_sources
from preprocessing.video_faces import sources as video_sources


def _touch(root, *relatives):
    for relative in relatives:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" + relative.encode())


def _tree(base, extension):
    """<base>/manual: a split tree whose train/fake is elsewhere, reached by a link."""
    manual = base / "manual"
    _touch(
        manual,
        *(f"{split}/{label}/a{extension}" for split in ("train", "test") for label in ("real",)),
        f"test/fake/b{extension}",
    )
    _touch(base / "elsewhere", f"fake/c{extension}", f"split/real/d{extension}")
    _touch(base / "elsewhere", f"split/fake/e{extension}")
    return manual


def _image_problems(manual_dir, **options):
    layout = image_sources.find_layout(str(manual_dir))
    return {s.id: s.problem for s in image_sources.list_sources(layout, **options)}


def _video_problems(manual_dir, allow_links_outside=False):
    layout = video_sources.find_video_layout(str(manual_dir), "auto")
    listed = video_sources.list_videos(
        layout, video_sources.SplitOptions(), allow_links_outside=allow_links_outside
    )
    return {s.id: s.problem for s in listed}


BUILDS = {"images": (".jpg", _image_problems), "videos": (".mp4", _video_problems)}


@pytest.mark.parametrize("build", sorted(BUILDS))
@pytest.mark.parametrize("linked", ["class", "split"])
def test_files_in_a_folder_linked_out_of_manual_dir_are_rejected(tmp_path, build, linked):
    extension, problems = BUILDS[build]
    manual = _tree(tmp_path, extension)
    if linked == "class":
        os.symlink(tmp_path / "elsewhere" / "fake", manual / "train" / "fake")
        expected = {f"train/fake/c{extension}"}
    else:
        os.symlink(tmp_path / "elsewhere" / "split", manual / "valid")
        expected = {f"valid/real/d{extension}", f"valid/fake/e{extension}"}
    got = problems(manual)
    assert {i for i, problem in got.items() if problem == inputs.LINK_OUTSIDE} == expected
    assert {i for i, problem in got.items() if not problem} == {
        f"train/real/a{extension}",
        f"test/real/a{extension}",
        f"test/fake/b{extension}",
    }
    # The documented opt-in follows them.
    assert not any(problems(manual, allow_links_outside=True).values())


def test_a_video_layout_root_linked_out_of_manual_dir_is_rejected(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    _touch(tmp_path / "elsewhere" / "clips", "train/real/a.mp4", "train/fake/b.mp4")
    os.symlink(tmp_path / "elsewhere" / "clips", manual / "clips")
    got = _video_problems(manual)
    assert got == {"train/real/a.mp4": inputs.LINK_OUTSIDE, "train/fake/b.mp4": inputs.LINK_OUTSIDE}


def test_a_folder_linked_inside_manual_dir_is_followed(tmp_path):
    manual = tmp_path / "manual"
    _touch(manual, "train/real/a.mp4", "store/fake/b.mp4")
    os.symlink(manual / "store" / "fake", manual / "train" / "fake")
    assert _video_problems(manual) == {"train/real/a.mp4": "", "train/fake/b.mp4": ""}
    assert inputs.folder_via_link(str(manual / "train" / "fake"), str(manual))
    assert not inputs.folder_via_link(str(manual / "train" / "real"), str(manual))
