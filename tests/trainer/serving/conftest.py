"""One tiny export, the demo's media and one `dfd-serve` process for every serving test.

The serving tests share the server (`xdist_group("serving")`: `make test` runs
pytest with `--dist loadgroup`, so they run on one worker and start it once).
"""

from __future__ import annotations

import os

import pytest

from preprocessing import demo_media
from tests.trainer import tiny_detector
from tests.trainer.serving.server import ServerProcess

# Small on purpose: every limit is reachable by a small file, MTCNN sees 3 frames per video.
SERVER_FLAGS = (
    "--max_frames=3",
    "--max_video_seconds=1.5",
    "--max_upload_bytes=3000000",
    "--max_frame_pixels=1000000",
    "--media_ttl_seconds=60",
)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("served_model"))
    tiny_detector.export_tiny_detector(directory)
    return directory


@pytest.fixture(scope="session")
def export_dir(model_dir):
    return os.path.join(model_dir, "export")


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory):
    """The demo's group photo (640x360, three faces) and a 2 s, 4 fps walk video (480x270)."""
    folder = tmp_path_factory.mktemp("demo_media")
    photo = folder / "group_photo.jpg"
    photo.write_bytes(demo_media.encode(demo_media.group_photo(640, 360, turned=True)))
    clip = demo_media.write_video(
        str(folder / "walk.mp4"), demo_media.moving_faces_frames(8, 480, 270), rate=4
    )
    return {"photo": str(photo), "video": clip, "folder": str(folder)}


@pytest.fixture(scope="session")
def server(export_dir, tmp_path_factory):
    process = ServerProcess(
        [f"--export_dir={export_dir}", *SERVER_FLAGS], str(tmp_path_factory.mktemp("logs"))
    )
    yield process
    assert process.stop() == 0, process.stderr()[-3000:]
