"""A small generated video dataset, made at test time: real clips, "fake" clips, broken ones.

- real: scikit-image's astronaut photograph (from the package, never copied here)
  moving across its coffee photograph, encoded with PyAV;
- fake: the same kind of clip whose every frame carries the synthetic generator's
  fingerprint (`preprocessing.synthetic.generator_fingerprint`: correlated noise,
  checkerboard upsampling, a first JPEG) before the video encode, so MTCNN still
  finds the face while the frames differ as the synthetic fakes do;
- broken: not a video, an empty file, an mp4 cut in half (no index), an mp4
  with its index first cut at 90% (it opens, and breaks while its last sampled
  frames are read: a chunk fails, not the plan), a container with no frame, a
  clip with no face, a clip too short, a byte copy of a training clip in the
  test split, and one clip under both labels of the validation split.

`write_folders` lays them out as `<split>/{real,fake}/**/*` and returns what the
build must make of each file: `{id: (outcome, reason)}`.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from preprocessing import demo_media, synthetic

WIDTH, HEIGHT = 320, 180  # Small frames: MTCNN costs ~0.2 s each on this machine.
FRAMES, RATE = 10, 5  # 2 s per clip.
# Sampling options the tests build with: 3 frames per clip, a clip of < 4 frames is too short.
FRAMES_PER_VIDEO, MIN_FRAMES, CHUNK_FRAMES = 3, 4, 2


def face_frames(seed: int, fake: bool, count: int = FRAMES) -> list[np.ndarray]:
    """One person moving right across the coffee photograph; the seed varies size and path."""
    rng = np.random.default_rng(seed)
    side = int(HEIGHT * rng.uniform(0.55, 0.7))
    face = demo_media.head(side)
    y = int(rng.uniform(0.0, 1.0) * (HEIGHT - side))
    start = int(rng.uniform(0.0, 0.2) * WIDTH)
    frames = []
    for index in range(count):
        # Slow enough that faces of consecutive sampled frames overlap: one track.
        x = int(start + 0.15 * (WIDTH - side - start) * index / max(1, count - 1))
        pixels = demo_media.paste(demo_media.canvas(WIDTH, HEIGHT), face, x, y)
        if fake:
            marked = synthetic.generator_fingerprint(pixels, rng)
            pixels = np.clip(np.round(marked), 0, 255).astype(np.uint8)
        frames.append(pixels)
    return frames


def background_frames(count: int = FRAMES) -> list[np.ndarray]:
    """The coffee photograph panning: no face anywhere."""
    wide = demo_media.canvas(WIDTH + 4 * count, HEIGHT)
    return [np.ascontiguousarray(wide[:, 4 * i : 4 * i + WIDTH]) for i in range(count)]


def write_clip(path: str, frames, index_first: bool = False) -> str:
    """H.264 in the container the name says; `index_first` puts an MP4's index (moov) first."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    options = {"movflags": "faststart"} if index_first else None
    return demo_media.write_video(path, frames, rate=RATE, container_options=options)


# (id, label is fake, seed) of the clips that must be written.
GOOD = (
    ("train/real/walk_a.mp4", False, 1),
    ("train/real/walk_b.mov", False, 2),
    ("train/fake/walk_c.mp4", True, 3),
    ("train/fake/FaceSwap/walk_d.mkv", True, 4),
    ("validation/real/walk_e.mp4", False, 5),
    ("validation/fake/walk_f.mp4", True, 6),
    ("test/real/walk_g.mp4", False, 7),
    ("test/fake/Deepfakes/walk_h.mp4", True, 8),
)


def write_folders(root: str) -> dict[str, tuple[str, str]]:
    """Writes the clips under `root`; returns {id: (outcome, reason)} for every video file."""
    expected: dict[str, tuple[str, str]] = {}
    for clip_id, fake, seed in GOOD:
        write_clip(os.path.join(root, clip_id), face_frames(seed, fake))
        expected[clip_id] = ("written", "")

    def plant(clip_id: str, reason: str, data: bytes | None = None) -> str:
        path = os.path.join(root, clip_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
        expected[clip_id] = ("rejected", reason)
        return path

    plant("train/real/notes.mp4", "not_a_video", b"meeting notes, not a video\n")
    plant("validation/fake/empty.mp4", "zero_byte", b"")
    whole = open(os.path.join(root, "train/fake/walk_c.mp4"), "rb").read()
    plant("train/fake/cut.mp4", "truncated", whole[: len(whole) // 2])  # Index gone.
    # Index first, cut at 90%: it opens and its first chunk decodes; the last chunk breaks.
    long = write_clip(
        os.path.join(root, "_scratch", "long.mp4"), face_frames(9, False, 60), index_first=True
    )
    data = open(long, "rb").read()
    plant("validation/real/cut_late.mp4", "truncated", data[: len(data) * 9 // 10])
    shutil.rmtree(os.path.join(root, "_scratch"))
    import av

    empty = plant("test/real/no_frames.avi", "zero_frames")
    with av.open(empty, "w") as container:
        stream = container.add_stream("mpeg4", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        container.start_encoding()
    write_clip(plant("test/real/coffee.mp4", "no_face"), background_frames())
    write_clip(plant("train/real/blink.mp4", "too_short"), face_frames(10, False, 2))
    plant("test/fake/Deepfakes/copy.mp4", "duplicate_across_splits", whole)
    # The same clip under both labels of one split: neither label can be trusted.
    twin = write_clip(
        plant("validation/real/twin.mp4", "same_bytes_two_labels"), face_frames(11, True)
    )
    plant("validation/fake/twin.mp4", "same_bytes_two_labels", open(twin, "rb").read())
    with open(os.path.join(root, "train", "real", "README.txt"), "w") as f:
        f.write("Not a video: skipped by name, and said so in the log.\n")
    return expected
