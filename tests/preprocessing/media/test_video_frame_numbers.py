"""Variable-frame-rate video in both consumers of `video.read_frames`: prediction and the build.

Issue 20: `frame_index = round(t x average fps)` gave two frames of a VFR clip one
number; prediction kept one record per number (carrying the score of the last
colliding crop) and the build one example id per number. Both now number frames by
their place in presentation order. No face detection here: a stub finds none.
"""

import types

import numpy as np

from preprocessing.video_faces import transforms as video_transforms
from tests import media_samples
from trainer.inference import media

# Shown at these milliseconds, with a stated rate of 10 fps: round(t x 10) gives the
# frames at 160 and 240 ms one number (2). Every frame is sampled.
STAMPS = [0, 160, 240, 420, 580, 1000]
TIMES = [stamp / 1000 for stamp in STAMPS]


class _NoFaces:
    """faces.FaceDetector's interface, finding nothing: only frame numbering is tested."""

    name = "none"

    def detect(self, image):
        del image
        return types.SimpleNamespace(faces=[], too_small=[], over_limit=0)

    def detect_batch(self, images):
        return [self.detect(image) for image in images]


def _clip(tmp_path):
    frames = [np.full((64, 64, 3), 30 * k, np.uint8) for k in range(len(STAMPS))]
    return media_samples.write_mjpeg(str(tmp_path / "vfr.mkv"), frames, STAMPS)


def test_prediction_gives_each_frame_of_a_vfr_clip_its_own_index(tmp_path):
    part, _ = media.inspect_video_chunk(
        _clip(tmp_path), TIMES, media.MediaOptions(), _NoFaces(), size=32
    )
    assert "status" not in part, part
    indices = [frame["frame_index"] for frame in part["frames"]]
    assert indices == [STAMPS.index(round(f["time"] * 1000)) for f in part["frames"]]
    assert len(set(indices)) == len(indices) == len(TIMES)


def test_the_build_gives_each_frame_of_a_vfr_clip_its_own_index(tmp_path):
    options = video_transforms.FrameOptions(frames_per_video=6, min_frames=1)
    result = video_transforms.decode_chunk(_clip(tmp_path), TIMES, options, _NoFaces())
    assert result.error is None, result.error
    indices = [frame.index for frame in result.frames]
    assert indices == [STAMPS.index(round(frame.time * 1000)) for frame in result.frames]
    assert len(set(indices)) == len(indices) == len(TIMES)
