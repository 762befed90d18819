"""Path helpers that work the same for local folders and `gs://` URLs.

Everything goes through `tf.io.gfile`, the file layer TFDS and Keras already
use, so a path that works here works for them. TensorFlow is imported only by
the helpers that touch files: `join` is pure string work, and tools such as
`dfd-synthetic --help` should not pay seconds of TensorFlow start-up.
"""

from __future__ import annotations

import os
import uuid


def looks_like_gcs_typo(path: str) -> bool:
    """Whether `path` was meant as a gs:// URL but is mistyped (gs:/b, gs:b, gcs://b, GS://b).

    Such a path would otherwise be taken for a local one, and a folder named `gs:`
    created in the working directory.
    """
    if not isinstance(path, str) or path.startswith("gs://"):
        return False
    lowered = path.lower()
    return lowered.startswith(("gs:", "gcs:", "gs//")) or lowered.startswith("gs://")


def join(base: str, *parts: str) -> str:
    """Joins path parts with '/', which both POSIX paths and gs:// URLs use."""
    return (
        os.path.join(base, *parts)
        if not base.startswith("gs://")
        else "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    )


def listdir(path: str) -> list[str]:
    """The names in folder `path`, sorted; GCS listings' trailing '/' on folders removed."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def ensure_writable(path: str) -> None:
    """Fails in seconds, not after hours, when `path` (a folder) cannot be written.

    Creates the folder if needed, then writes and deletes a small probe file.
    `gs://` paths are probed with google-cloud-storage (preprocessing/gcs.py), which
    honours STORAGE_EMULATOR_HOST and so is tested against a local GCS emulator.

    Raises:
        ValueError: `path` is a mistyped gs:// URL, or names an invalid bucket.
        PermissionError: naming the path and the likely fix.
    """
    if looks_like_gcs_typo(path):
        raise ValueError(f"{path} is not a valid Cloud Storage URL: write gs://BUCKET/PATH.")
    if path.startswith("gs://"):
        from preprocessing import gcs  # pylint: disable=import-outside-toplevel

        gcs.ensure_writable(path)
        return
    import tensorflow as tf  # pylint: disable=import-outside-toplevel  (join needs no TF)

    probe = join(path, f".write_probe-{uuid.uuid4().hex}")
    try:
        tf.io.gfile.makedirs(path)
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("ok")
        tf.io.gfile.remove(probe)
    except (tf.errors.OpError, OSError) as error:
        raise PermissionError(
            f"Cannot write to {path}: {error}. Fix: check the folder's permissions and free space."
        ) from error
