"""preprocessing.media.video on files written with PyAV here: containers, rotation, broken files."""

import re

import numpy as np
import pytest

from preprocessing.media import video
from tests import media_samples


def _frames(count, width=96, height=64):
    """Frame k has a white bar at x = 4k: its position tells which frame was decoded."""
    frames = []
    for index in range(count):
        pixels = np.full((height, width, 3), 40, np.uint8)
        pixels[:, 4 * index : 4 * index + 4] = 255
        frames.append(pixels)
    return frames


def _bar_position(image):
    return int(np.argmax(image.mean(axis=(0, 2)) > 150)) // 4


@pytest.mark.parametrize(
    "name,codec", [("clip.mp4", "libx264"), ("clip.webm", "libvpx-vp9"), ("clip.avi", "mpeg4")]
)
def test_sampling_plan_and_chunked_reads_agree(tmp_path, name, codec):
    path = media_samples.write_video(str(tmp_path / name), _frames(20), rate=10, codec=codec)
    info = video.probe(path)
    assert (info.width, info.height, info.rotation) == (96, 64, 0)
    assert info.duration == pytest.approx(2.0, abs=0.11) and info.frame_rate == pytest.approx(10)
    times = video.plan_times(info, max_frames=5)
    assert times == pytest.approx([0.2, 0.6, 1.0, 1.4, 1.8], abs=0.02)
    frames = list(video.read_frames(path, times))
    assert [frame.index for frame in frames] == [2, 6, 10, 14, 18]
    assert [_bar_position(frame.image) for frame in frames] == [2, 6, 10, 14, 18]
    # The plan split in chunks (as batch scoring does across workers) gives the same frames.
    chunked = [
        frame for chunk in (times[:2], times[2:]) for frame in video.read_frames(path, chunk)
    ]
    assert [frame.index for frame in chunked] == [2, 6, 10, 14, 18]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, chunked))
    by_rate = video.plan_times(info, frames_per_second=3)
    assert len(by_rate) == 6 and by_rate[0] == 0.0


def test_hard_cap_and_bad_sampling_values(tmp_path):
    info = video.VideoInfo(3600.0, 30.0, 640, 360, 0, "h264", "mp4")
    assert len(video.plan_times(info, frames_per_second=30)) == video.HARD_CAP
    assert len(video.plan_times(info, frames_per_second=1, max_frames=10)) == 10
    short = video.VideoInfo(0.3, 10.0, 64, 64, 0, "h264", "mp4")
    assert len(video.plan_times(short, max_frames=50)) == 3  # Never more than the video has.
    with pytest.raises(ValueError, match="hard cap"):
        video.plan_times(info, max_frames=video.HARD_CAP + 1)
    with pytest.raises(ValueError, match="frames_per_second"):
        video.plan_times(info, frames_per_second=0)


def test_sampling_rate_plans_without_building_the_grid():
    # Issue 20: 1e5 per second over 20 minutes built 120 million time stamps (5.3 GB)
    # before thinning them to 256; 1e9 ran out of memory; inf divided by zero.
    twenty_minutes = video.VideoInfo(1200.0, 30.0, 640, 360, 0, "h264", "mp4")
    for rate in (1e5, 1e9, 1e300):
        times = video.plan_times(twenty_minutes, frames_per_second=rate)
        assert len(times) == video.HARD_CAP and times == sorted(set(times))
        assert times[0] == 0.0 and 1150 < times[-1] < 1200
    # Where the grid is small enough, the plan is the grid itself, as before.
    assert video.plan_times(twenty_minutes, frames_per_second=0.1)[:3] == [0.0, 10.0, 20.0]
    for bad in (float("inf"), float("nan"), -1.0, 0.0):
        with pytest.raises(ValueError, match="finite number > 0"):
            video.plan_times(twenty_minutes, frames_per_second=bad)


def test_variable_frame_rate_frames_get_one_index_each(tmp_path):
    # Shown at irregular times: round(time x average rate) gave frames 0.0 s and 0.04 s
    # one number, and a kept record the score of another frame (issue 20).
    stamps = [0, 40, 50, 60, 300, 310, 700, 1000]
    path = media_samples.write_mjpeg(str(tmp_path / "vfr.mkv"), _frames(8, 64, 64), stamps)
    times = [stamp / 1000 for stamp in stamps]
    frames = list(video.read_frames(path, times))
    assert [frame.index for frame in frames] == [
        stamps.index(round(frame.time * 1000)) for frame in frames
    ]
    assert [frame.index for frame in frames] == [_bar_position(f.image) for f in frames]
    assert len({frame.index for frame in frames}) == len(frames) >= 5
    # A chunk read after a seek numbers its frames the same way.
    later = list(video.read_frames(path, times[4:]))
    assert [frame.index for frame in later] == [f.index for f in frames if f.time >= 0.3]


@pytest.mark.parametrize("name", ["grows.avi", "grows.mkv"])
def test_a_later_frame_above_the_pixel_limit_is_refused_before_decoding(tmp_path, name):
    # The header says 64x64; the third frame is 128x128, above a 100x100 limit.
    frames = _frames(4, 64, 64)
    frames[2] = np.zeros((128, 128, 3), np.uint8)
    path = media_samples.write_mjpeg(str(tmp_path / name), frames, [0, 100, 200, 300])
    limit = 100 * 100
    info = video.probe(path, max_pixels=limit)  # The header passes.
    got = []
    with pytest.raises(video.HugeFrameError, match=r"128x128.*--max_frame_pixels"):
        for frame in video.read_frames(path, [0.0, 0.1, 0.2, 0.3], max_pixels=limit):
            got.append(frame)
    assert [frame.image.shape for frame in got] == [(64, 64, 3)] * 2
    assert info.width == 64


def test_rotation_metadata_is_honoured(tmp_path):
    # Stored sideways with a display matrix saying "turn 90 degrees counter-clockwise":
    # decoded frames come out upright (the marker back at the top-left corner).
    upright = np.full((64, 96, 3), 40, np.uint8)
    upright[:16, :16] = 255
    stored = np.ascontiguousarray(np.rot90(upright, k=-1))  # 96 tall, 64 wide.
    path = media_samples.write_video(str(tmp_path / "phone.mp4"), [stored] * 5, rotation=90)
    info = video.probe(path)
    assert (info.rotation, info.width, info.height) == (90, 96, 64)
    frame = next(video.read_frames(path, [0.0]))
    assert frame.image.shape == (64, 96, 3)
    assert frame.image[:16, :16].mean() > 200 and frame.image[-16:, -16:].mean() < 100


def _expect(path, reason, match=None, **kwargs):
    with pytest.raises(video.VideoError) as caught:
        info = video.probe(path, **kwargs)
        list(video.read_frames(path, video.plan_times(info, max_frames=8), **kwargs))
    assert caught.value.reason == reason, caught.value
    if match:
        assert re.search(match, str(caught.value)), str(caught.value)
    return caught.value


def test_bad_files_get_a_reason(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("secret-token-123\n")
    error = _expect(str(text), "not_a_video", "not a video file")
    assert "secret" not in str(error)  # Never quotes the file's content.

    whole = media_samples.write_video(str(tmp_path / "whole.mp4"), _frames(20))
    cut = tmp_path / "cut.mp4"
    data = open(whole, "rb").read()
    cut.write_bytes(data[: len(data) // 2])  # The index (moov) is at the end: gone.
    _expect(str(cut), "truncated", "truncated or corrupt")

    long_webm = media_samples.write_video(
        str(tmp_path / "long.webm"), _frames(24) * 3, rate=10, codec="libvpx-vp9"
    )
    data = open(long_webm, "rb").read()
    cut_webm = tmp_path / "cut.webm"
    cut_webm.write_bytes(data[: len(data) // 2])
    info = video.probe(str(cut_webm))  # The header still claims 7.2 s.
    got = []
    with pytest.raises(video.TruncatedVideoError, match="stream ends at"):
        for frame in video.read_frames(str(cut_webm), video.plan_times(info, max_frames=8)):
            got.append(frame)
    assert 0 < len(got) < 8  # The frames before the break were delivered first.

    import av

    empty = str(tmp_path / "empty.avi")
    with av.open(empty, "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    _expect(empty, "zero_frames")

    # An AVI whose stream is tagged with a codec FFmpeg does not know.
    avi = media_samples.write_video(str(tmp_path / "x.avi"), _frames(5), codec="mpeg4")
    unknown = tmp_path / "unknown_codec.avi"
    unknown.write_bytes(open(avi, "rb").read().replace(b"FMP4", b"ZQ97"))
    _expect(str(unknown), "unsupported_codec", "re-encode")

    _expect(avi, "huge_frame", "max_frame_pixels", max_pixels=96 * 64 - 1)


def test_looks_like_video():
    assert video.looks_like_video(b"\x00\x00\x00\x20ftypisom\x00\x00")
    assert video.looks_like_video(b"\x1a\x45\xdf\xa3\x9f")
    assert video.looks_like_video(b"RIFF\x00\x00\x00\x00AVI LIST")
    assert not video.looks_like_video(b"\xff\xd8\xff\xe0\x00\x10JFIF")
