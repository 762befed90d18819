"""A tiny TFDS dataset of face crops cut from "videos", for the evaluation and matrix tests.

Each example has the project's image features (`preprocessing.schema.features()`)
plus the video features of the schema: `video_id`, `frame_index`, `track_id` and
`source`, as the video dataset build writes them. The frames are uniform-ish
images whose brightness the tiny detector (`tests/trainer/tiny_detector.py`)
turns into p_fake, so tests know the order of the scores: fake videos are
mostly bright with a few dark frames, real ones mostly dark with a few bright
frames, which makes frame-level and video-level figures differ.
"""

from __future__ import annotations

import hashlib

import numpy as np

from preprocessing import schema
from tests.trainer import tiny_detector

DATASET_NAME = "tiny_video_faces"
# (source, label, brightness of each frame per track): one entry per video of a split.
VIDEOS = {
    "validation": [
        ("youtube", schema.REAL, [[40, 60, 200]]),
        ("youtube", schema.REAL, [[30, 90, 70]]),
        ("Deepfakes", schema.FAKE, [[210, 180, 50]]),
        ("FaceSwap", schema.FAKE, [[160, 230, 120]]),
    ],
    "test": [
        ("youtube", schema.REAL, [[40, 50, 220, 60], [35, 45]]),
        ("youtube", schema.REAL, [[100, 80, 90, 70]]),
        ("youtube", schema.REAL, [[150, 30, 20, 25]]),
        ("Deepfakes", schema.FAKE, [[200, 190, 40, 210]]),
        ("Deepfakes", schema.FAKE, [[60, 70, 180, 75], [120, 130]]),
        ("FaceSwap", schema.FAKE, [[230, 220, 240, 35]]),
        ("FaceSwap", schema.FAKE, [[110, 95, 140, 85]]),
    ],
}


def features():
    """The image features of the project's schema plus the video ones."""
    import tensorflow_datasets as tfds

    return tfds.features.FeaturesDict(
        {
            **{key: feature for key, feature in schema.features().items()},
            schema.VIDEO_ID: tfds.features.Text(),
            schema.FRAME_INDEX: np.int32,
            schema.TRACK_ID: np.int32,
            schema.SOURCE: tfds.features.Text(),
        }
    )


def examples(split: str, size: int = 40):
    """(key, example) pairs of `split`: every frame of every track of every video."""
    key = 0
    for video_index, (source, label, tracks) in enumerate(VIDEOS[split]):
        video_id = f"{split}/{schema.LABEL_NAMES[label]}/{source}/clip{video_index:02d}.mp4"
        for track_id, brightnesses in enumerate(tracks):
            for frame_index, brightness in enumerate(brightnesses):
                data = tiny_detector.jpeg_bytes(brightness, size=size, seed=key)
                name = f"clip{video_index:02d}_t{track_id}_f{frame_index:03d}.jpg"
                yield (
                    key,
                    {
                        schema.IMAGE: data,
                        schema.LABEL: label,
                        schema.ID: f"{video_id}/{name}",
                        schema.FILENAME: name,
                        schema.SHA256: hashlib.sha256(data).hexdigest(),
                        schema.VIDEO_ID: video_id,
                        schema.FRAME_INDEX: frame_index,
                        schema.TRACK_ID: track_id,
                        schema.SOURCE: source,
                    },
                )
                key += 1


def write(data_dir: str, *, size: int = 40) -> str:
    """Writes `tiny_video_faces` (validation and test splits) under `data_dir`; returns it."""
    import tensorflow_datasets as tfds

    tfds.dataset_builders.store_as_tfds_dataset(
        name=DATASET_NAME,
        version="1.0.0",
        features=features(),
        split_datasets={split: list(examples(split, size)) for split in VIDEOS},
        data_dir=data_dir,
        description="Tiny video-like test dataset: frames with video_id/track_id/source.",
        download_config=tfds.download.DownloadConfig(num_shards=1),
    )
    return data_dir
