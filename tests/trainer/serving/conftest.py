"""One tiny export, the demo's media and two `dfd-serve` processes for every serving test.

Session-scoped: each pytest-xdist worker that runs serving tests starts them once (so up
to two sets under `make test`'s `-n auto` on 2 cores). `--dist loadgroup` would keep them
on one worker, but pytest-xdist 3.8's `xdist_group` has no effect under pytest 9.2 (it
renames `item._nodeid`, which pytest 9 no longer reads).
"""

from __future__ import annotations

import os

import pytest

from preprocessing import demo_media
from tests.trainer import tiny_detector
from tests.trainer.serving.server import ServerProcess, free_port

# Small on purpose: every limit is reachable by a small file, the detector sees 3 frames per video.
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
    # A model card as trainer.task writes it (values made up for the page test to find).
    tiny_detector.export_tiny_detector(
        directory,
        dataset="real_and_fake_faces",
        exported_at="2026-12-02T10:00:00+00:00",
        validation_auc=0.9876,
        validation_eer=0.0432,
    )
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


# The second server scores on the first (`--model_url`) and has tight limits. It finds faces
# with MTCNN, the slow detector, so a 120-frame analysis outlasts --request_timeout_seconds on
# any machine (RetinaFace, the default, can finish a short clip in time), while a photo stays
# well inside it on a loaded one; serving is tested with the non-default detector too.
REMOTE_FLAGS = (
    "--face_detector=mtcnn",
    "--max_concurrent_analyses=1",
    "--max_queued_analyses=0",
    "--request_timeout_seconds=4",
    "--retry_after_seconds=3",
    "--max_frames=120",
    "--max_video_seconds=60",
)


@pytest.fixture(scope="session")
def servers(export_dir, tmp_path_factory):
    """Both servers, started at the same time (the first on a port chosen in advance)."""
    logs = str(tmp_path_factory.mktemp("logs"))
    port = free_port()
    main = ServerProcess([f"--export_dir={export_dir}", *SERVER_FLAGS], logs, port=port, wait=False)
    remote = ServerProcess(
        [
            f"--export_dir={export_dir}",
            f"--model_url=http://127.0.0.1:{port}/v1/models/deepfake",
            *REMOTE_FLAGS,
        ],
        logs,
        name="remote",
        wait=False,
    )
    yield main.wait_until_up(), remote.wait_until_up()
    remote.stop()
    assert main.stop() == 0, main.stderr()[-3000:]


@pytest.fixture(scope="session")
def server(servers):
    return servers[0]


@pytest.fixture(scope="session")
def remote(servers):
    return servers[1]
