"""preprocessing.building.archive: zip inputs extracted capped, streamed, all or nothing."""

import os
import tracemalloc
import zipfile

import pytest

from preprocessing.building import archive

MIB = 1 << 20


def _zip(path, entries):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        for name, data in entries.items():
            zipped.writestr(name, data)
    return str(path)


def test_a_small_zip_that_expands_past_the_cap_is_refused_before_writing(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", {"big.bin": b"\0" * (8 * MIB)})
    assert os.path.getsize(bomb) < 64 * 1024  # Compresses to almost nothing.
    destination = str(tmp_path / "out" / "bomb")
    with pytest.raises(
        archive.ArchiveTooLargeError,
        match=r"declares 8\.4 MB \(8,388,608 bytes\) uncompressed, more than "
        r"--max_extract_gb=0\.001 \(1,000,000 bytes\)",
    ):
        archive.extract(bomb, destination, max_bytes=int(0.001 * archive.GB))
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_sizes_are_printed_in_a_unit_that_shows_them():
    assert archive.format_size(16 * archive.GB) == "16.00 GB"
    assert archive.format_size(1_234_567) == "1.2 MB"
    assert archive.format_size(812_000) == "812.0 kB"
    assert archive.format_size(96) == "96 bytes"


def test_entries_are_streamed_not_read_whole(tmp_path):
    big = _zip(tmp_path / "big.zip", {"a/big.bin": b"\0" * (48 * MIB), "a/b.txt": b"b"})
    tracemalloc.start()
    try:
        extracted = archive.extract(big, str(tmp_path / "out" / "big"), max_bytes=64 * MIB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert extracted.files == 2 and extracted.bytes == 48 * MIB + 1
    assert peak < 8 * MIB, peak  # A whole-entry read would hold 48 MiB at once.
    assert os.path.getsize(tmp_path / "out" / "big" / "a" / "big.bin") == 48 * MIB


def test_unsafe_names_and_links_are_skipped_and_a_complete_extraction_is_reused(tmp_path):
    link = zipfile.ZipInfo("train/real/link.jpg")
    link.external_attr = (0o120777 << 16) | 0  # A symbolic-link entry.
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("train/real/ok.jpg", b"ok")
        zipped.writestr("../escape.jpg", b"no")
        zipped.writestr("/abs.jpg", b"no")
        zipped.writestr(link, "/etc/hostname")
    destination = str(tmp_path / "out" / "odd")
    first = archive.extract(str(path), destination, max_bytes=MIB)
    assert first.files == 1 and len(first.skipped) == 3 and not first.reused
    assert sorted(os.listdir(tmp_path / "out")) == ["odd"]  # No ../escape.jpg, no staging left.
    assert not (tmp_path / "escape.jpg").exists()
    again = archive.extract(str(path), destination, max_bytes=MIB)
    assert again.reused and again.files == 1


def test_an_interrupted_extraction_is_never_taken_for_a_complete_one(tmp_path):
    path = _zip(tmp_path / "data.zip", {"x/1.jpg": b"1", "x/2.jpg": b"2"})
    destination = str(tmp_path / "out" / "data")
    os.makedirs(destination + archive.INCOMPLETE_INFIX + "dead")  # What a kill leaves.
    extracted = archive.extract(path, destination, max_bytes=MIB)
    assert extracted.files == 2 and not extracted.reused
    assert sorted(os.listdir(tmp_path / "out")) == ["data"]
    with pytest.raises(ValueError, match="not a readable zip"):
        archive.extract(
            str(tmp_path / "out" / "data" / "x" / "1.jpg"), str(tmp_path / "o2"), max_bytes=1
        )


def test_a_copy_of_the_same_zip_reuses_the_extraction_and_other_contents_do_not(tmp_path):
    """Reuse is decided by the entries (names, CRC-32, sizes), not the zip's path or mtime."""
    destination = str(tmp_path / "out" / "faces")
    (tmp_path / "a").mkdir()
    first = _zip(tmp_path / "a" / "faces.zip", {"x/1.jpg": b"one", "x/2.jpg": b"two"})
    assert not archive.extract(first, destination, max_bytes=MIB).reused
    (tmp_path / "b").mkdir()
    copy = tmp_path / "b" / "faces.zip"
    copy.write_bytes(open(first, "rb").read())  # Another path, a new mtime, the same bytes.
    assert archive.extract(str(copy), destination, max_bytes=MIB).reused
    # Same names and sizes, one byte different: extracted again, with the new bytes.
    changed = _zip(tmp_path / "b" / "faces.zip", {"x/1.jpg": b"ONE", "x/2.jpg": b"two"})
    again = archive.extract(changed, destination, max_bytes=MIB)
    assert not again.reused
    assert open(os.path.join(destination, "x", "1.jpg"), "rb").read() == b"ONE"
