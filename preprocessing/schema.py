"""The data contract: labels, splits and example features, in one place.

Every other module (the Beam transforms, the TFDS builder, the trainer, the
evaluation and prediction tools) takes these names from here, so that "which
label is fake" has exactly one answer in the code base.

The detector's positive class is "fake": `real` = 0, `fake` = 1. The Kaggle
"140k Real and Fake Faces" CSVs encode the opposite (1 = real, 0 = fake);
`label_from_kaggle_csv` is the only place that converts it.
"""

from __future__ import annotations

import math

DATASET_NAME = "real_and_fake_faces"

# Class names in label-id order: index 0 is "real", index 1 is "fake".
LABEL_NAMES: tuple[str, ...] = ("real", "fake")
REAL = LABEL_NAMES.index("real")
FAKE = LABEL_NAMES.index("fake")
POSITIVE_CLASS = "fake"

# TFDS split names, and the folder names that hold them in the Kaggle layout.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_FOLDERS: dict[str, str] = {
    "train": "train",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
}
KAGGLE_SPLIT_FOLDERS: dict[str, str] = {"train": "train", "validation": "valid", "test": "test"}

# Feature keys of every example.
IMAGE = "image"  # JPEG bytes; original bytes when the input is a valid RGB JPEG.
LABEL = "label"  # ClassLabel over LABEL_NAMES.
ID = "id"  # Stable unique id: the input's path relative to the dataset root, '/'-separated.
FILENAME = "filename"  # The input's base name, for humans.
SHA256 = "sha256"  # Hex SHA-256 of the stored image bytes (leakage checks, dedup).

# Extra feature keys of examples cut from videos (face crops of sampled frames). Evaluation
# aggregates frame scores per video with `trainer.aggregation` when VIDEO_ID is present.
VIDEO_ID = "video_id"  # Stable id of the source video (its path relative to the root).
FRAME_INDEX = "frame_index"  # Index of the decoded frame in the video (0-based).
TRACK_ID = "track_id"  # Face track within the video (0-based), see preprocessing.media.faces.
SOURCE = "source"  # Source or generator name (e.g. "youtube", "Deepfakes", "stylegan").

# The Kaggle CSVs: `,original_path,id,label,label_str,path`, label 1 = real.
KAGGLE_CSV_REAL = 1
KAGGLE_CSV_FAKE = 0
# Celeb-DF's List_of_testing_videos.txt: `<label> <folder>/<video>`, label 1 = real (as Kaggle).
CELEB_DF_LIST_REAL = 1
CELEB_DF_LIST_FAKE = 0


def check_threshold(value, where: str) -> float:
    """A decision threshold as a float, or ValueError naming `where` and the fix.

    The one rule for every threshold (a `--threshold` flag, `detector.json`): `p_fake`
    is a probability, so a threshold outside [0, 1] (or NaN, or not a number) would
    label every input the same without saying so.

    Args:
        value: what was given (a float from a flag, anything from a JSON file).
        where: how the user names it, e.g. "--threshold" or "export/detector.json: key 'threshold'".
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{where}: {value!r} is not a number; give a probability in [0, 1], e.g. 0.5."
        )
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{where}: {value} is outside [0, 1]; p_fake is a probability, so give a "
            "threshold in [0, 1], e.g. 0.5."
        )
    return value


def label_from_kaggle_csv(value: int | str) -> int:
    """Converts a Kaggle CSV `label` (1 = real, 0 = fake) to ours (real = 0, fake = 1).

    Raises:
        ValueError: naming the value, when it is neither 0 nor 1.
    """
    try:
        number = int(str(value).strip())
    except ValueError:
        number = None
    if number == KAGGLE_CSV_REAL:
        return REAL
    if number == KAGGLE_CSV_FAKE:
        return FAKE
    raise ValueError(
        f"Kaggle CSV label {value!r} is not 0 (fake) or 1 (real); is this the "
        "'140k Real and Fake Faces' CSV?"
    )


def label_from_celeb_df_list(value: int | str) -> int:
    """Converts a label of Celeb-DF's test list (1 = real, 0 = fake) to ours (real = 0, fake = 1).

    Raises:
        ValueError: naming the value, when it is neither 0 nor 1.
    """
    number = int(value) if str(value).strip() in ("0", "1") else None
    if number == CELEB_DF_LIST_REAL:
        return REAL
    if number == CELEB_DF_LIST_FAKE:
        return FAKE
    raise ValueError(
        f"Celeb-DF test-list label {value!r} is not 1 (real) or 0 (fake); is this "
        "List_of_testing_videos.txt?"
    )


def label_from_name(name: str) -> int:
    """Converts a class folder name or label string ('real'/'fake', any case) to a label id."""
    key = name.strip().lower()
    if key not in LABEL_NAMES:
        raise ValueError(f"Class name {name!r} is not one of {list(LABEL_NAMES)}.")
    return LABEL_NAMES.index(key)


def split_from_folder(folder: str) -> str:
    """Maps a split folder name ('train', 'valid', 'validation', 'test') to a TFDS split name."""
    key = folder.strip().lower()
    if key not in SPLIT_FOLDERS:
        raise ValueError(f"Split folder {folder!r} is not one of {sorted(SPLIT_FOLDERS)}.")
    return SPLIT_FOLDERS[key]


def features():
    """The TFDS `FeaturesDict` of one example; the builder's `_info` uses it as is."""
    import tensorflow_datasets as tfds  # Lazy: keeps `schema` importable without TF.

    return tfds.features.FeaturesDict(
        {
            IMAGE: tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            LABEL: tfds.features.ClassLabel(names=list(LABEL_NAMES)),
            ID: tfds.features.Text(),
            FILENAME: tfds.features.Text(),
            SHA256: tfds.features.Text(),
        }
    )


def video_features():
    """The `FeaturesDict` of a dataset cut from videos: `features()` plus the video keys.

    Each example is one aligned face crop of one sampled frame; the image features
    are the image dataset's, so the trainer reads both alike (it reads only image and
    label), and evaluation aggregates per track and video from the extra keys.
    """
    import numpy as np  # pylint: disable=import-outside-toplevel
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    return tfds.features.FeaturesDict(
        {
            **features(),
            VIDEO_ID: tfds.features.Text(),
            FRAME_INDEX: np.int32,
            TRACK_ID: np.int32,
            SOURCE: tfds.features.Text(),
        }
    )
