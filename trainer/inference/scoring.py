"""Finding inputs, reading them and scoring JPEG bytes with the exported detector: one path.

Shared by `trainer.predict` (one machine), `trainer.batch_score` (Beam
RunInference), `trainer.inference.media` (photos and videos) and Grad-CAM, so each rule
exists once:

- which files an input names (`expand_inputs`: regular files only, each real
  file once, no symbolic link out of the input folder unless asked);
- how bytes become the JPEG the model sees (`to_jpeg_bytes`, the dataset
  build's own normalisation);
- how a batch the model rejects is retried one image at a time
  (`score_with_retry`);
- how a score becomes a label (`trainer.metrics.label_name`, i.e. `predict_labels`);
- what counts as an export (`check_export`).

Kept apart from the command-line modules so that neither defines the other's
flags, and so Beam workers import only TensorFlow, Pillow and the export
contract, never the training code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
import dataclasses
import os
import stat

from absl import logging
import numpy as np
import tensorflow as tf

from preprocessing import paths, schema
from preprocessing.media import images
from trainer import export, metrics

GLOB_CHARACTERS = "*?["
UNDECODABLE = "the model could not decode this image"


class UnreadableImageError(ValueError):
    """An input that is not an image the detector can score; the message says why.

    `reason` is a stable code for the output's `status` field.
    """

    def __init__(self, message: str, reason: str = "unreadable"):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Prediction:
    """One input's outcome: a verdict, or the reason there is none.

    Attributes:
        path: the input.
        p_fake: the verdict's probability; None without a verdict.
        label: "real" or "fake" at the threshold; None without a verdict.
        error: why the input has no verdict (None when it has one, or when it
            is a photo without a face: that is `status`, not an error).
        kind: "crop" (scored as given), "photo" (faces found first), "video",
            or "" when the input was never read.
        status: "ok", "no_face", "face_too_small", or the reason code of an
            error ("not_found", "not_a_regular_file", "not_an_image",
            "truncated", "not_a_video", "zero_frames", ...).
        details: per-face / per-track results and video information, merged
            into `to_dict()` (see trainer.inference.media).
    """

    path: str
    p_fake: float | None = None
    label: str | None = None
    error: str | None = None
    kind: str = "crop"
    status: str = "ok"
    details: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        record = {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "p_fake": self.p_fake,
            "label": self.label,
            "error": self.error,
        }
        record = {key: value for key, value in record.items() if value not in (None, "")}
        record.update(self.details)
        return record

    @classmethod
    def reject(cls, path: str, error: str, status: str, kind: str = "") -> Prediction:
        return cls(path, error=error, status=status, kind=kind)


# ---------------------------------------------------------------------------- inputs


def expand_inputs(
    inputs: Iterable[str], follow_outside_links: bool = False
) -> tuple[list[str], list[Prediction]]:
    """Turns files, folders and globs into a sorted list of regular files.

    Local folders are walked without trusting the file system: only regular
    files are listed (a named pipe would block the reader forever; sockets and
    devices are not images), each real file once however many links reach it
    (a symbolic-link loop is walked once), and a symbolic link whose target is
    outside the folder given is not followed unless `follow_outside_links`. A
    file named explicitly on the command line is read wherever it points.

    Returns:
        (files, rejects): `rejects` holds a Prediction with an error for each
        input that matched nothing and each entry that is not read, so it is
        reported like any other reject. No file content is ever put in a message.
    """
    found = _Expansion(follow_outside_links)
    for item in dict.fromkeys(inputs):  # The same input twice is read once.
        matches = [item]
        if any(character in item for character in GLOB_CHARACTERS):
            matches = sorted(tf.io.gfile.glob(item))
            if not matches:
                found.reject(item, "no file matches this glob", "not_found")
        for match in matches:
            if _is_remote(match):
                found.add_remote(match)
            else:
                found.add_local(match)
    return found.files, found.rejects


@dataclasses.dataclass
class _Expansion:
    """The files and rejects `expand_inputs` has found so far, and the real files seen."""

    follow_outside_links: bool
    files: list[str] = dataclasses.field(default_factory=list)
    rejects: list[Prediction] = dataclasses.field(default_factory=list)
    seen_real: set[str] = dataclasses.field(default_factory=set)

    def reject(self, path: str, error: str, status: str) -> None:
        self.rejects.append(Prediction.reject(path, error, status))

    def add(self, path: str) -> None:
        """Adds `path` unless the file it names (links resolved, locally) is listed already."""
        key = os.path.realpath(path) if not _is_remote(path) else path
        if key not in self.seen_real:
            self.seen_real.add(key)
            self.files.append(path)

    def add_remote(self, match: str) -> None:
        """A gs:// (or other remote) file, or every file under a remote folder."""
        if tf.io.gfile.isdir(match):
            under = _remote_files_under(match)
            if not under:
                self.reject(match, "folder holds no files", "empty_folder")
            for path in under:
                self.add(path)
        elif tf.io.gfile.exists(match):
            self.add(match)
        else:
            self.reject(match, "file not found", "not_found")

    def add_local(self, match: str) -> None:
        """A local file, or the regular files of a local folder (see `expand_inputs`)."""
        if os.path.isdir(match):
            # An input given twice, or a folder inside one given before, adds nothing and
            # is no "empty folder": its files are listed already (and counted as repeats).
            under, bad, repeats = _local_files_under(
                match, self.follow_outside_links, self.seen_real
            )
            self.rejects.extend(bad)
            if repeats and not under:
                logging.info("%s: its files are listed already (named twice?).", match)
            elif not under and not bad:
                self.reject(match, "folder holds no files", "empty_folder")
            self.files.extend(under)
        elif os.path.lexists(match):
            problem = _not_regular(match)
            if problem:
                self.reject(match, problem, "not_a_regular_file")
            else:
                self.add(match)
        else:
            self.reject(match, "file not found", "not_found")


def _is_remote(path: str) -> bool:
    return "://" in path


def _remote_files_under(folder: str) -> list[str]:
    found = []
    for root, _, names in tf.io.gfile.walk(folder):
        found.extend(paths.join(root, name) for name in names if not name.startswith("."))
    return sorted(found)


def _not_regular(path: str) -> str | None:
    """Why `path` is not read (a named pipe, a socket, a device, a dangling link), or None."""
    try:
        mode = os.stat(path).st_mode  # Follows links; never opens (opening a FIFO blocks).
    except OSError as error:
        if os.path.islink(path):
            return "broken symbolic link (its target does not exist)"
        return f"cannot stat the file ({error.strerror})"
    if stat.S_ISREG(mode):
        return None
    kinds = {
        stat.S_ISFIFO: "a named pipe (FIFO)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "not a regular file")
    return f"not a regular file: {kind}; only regular files are read"


def _local_files_under(
    folder: str, follow_outside_links: bool, seen_real: set[str]
) -> tuple[list[str], list[Prediction], int]:
    """Walks `folder` depth-first in name order; see `expand_inputs` for the rules.

    Returns:
        (new files, rejects, number of files skipped because they were listed already).
    """
    root_real = os.path.realpath(folder)
    visited_dirs = {root_real}
    found: list[str] = []
    rejects: list[Prediction] = []
    repeats = [0]

    def inside(real: str) -> bool:
        return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)

    def walk(directory: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as error:
            rejects.append(
                Prediction.reject(directory, f"cannot list ({error.strerror})", "unreadable")
            )
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = paths.join(directory, entry.name)
            real = os.path.realpath(path)
            if entry.is_symlink() and not follow_outside_links and not inside(real):
                rejects.append(
                    Prediction.reject(
                        path,
                        "symbolic link to a path outside the input folder: not followed "
                        "(pass --follow_outside_links to read it)",
                        "link_outside_input",
                    )
                )
                continue
            if os.path.isdir(path):
                if real in visited_dirs:
                    logging.info("Not walking %s again: a folder already read.", path)
                    continue
                visited_dirs.add(real)
                walk(path)
                continue
            problem = _not_regular(path)
            if problem:
                rejects.append(Prediction.reject(path, problem, "not_a_regular_file"))
            elif real not in seen_real:
                seen_real.add(real)
                found.append(path)
            else:
                repeats[0] += 1

    walk(folder)
    return found, rejects, repeats[0]


# ---------------------------------------------------------------------------- reading


def read_bytes(path: str, max_bytes: int = images.DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Reads a local or gs:// file of at most `max_bytes` (checked from its size before
    reading: `images.read_bounded`); UnreadableImageError says why not."""
    try:
        data = images.read_bounded(path, max_bytes)
    except images.FileTooLargeError as error:
        raise UnreadableImageError(str(error), error.reason) from None
    except (tf.errors.OpError, OSError) as error:
        message = getattr(error, "message", None) or getattr(error, "strerror", None) or ""
        raise UnreadableImageError(f"cannot read file ({message.strip()})", "unreadable") from None
    if not data:
        raise UnreadableImageError("empty file", "zero_byte")
    return data


def read_head(path: str, size: int = 16) -> bytes:
    """The first `size` bytes of a file (telling videos from images without reading them whole).

    Raises:
        UnreadableImageError: "unreadable" when the file cannot be opened (no permission,
            say), so a video that cannot be read is not called "not a video".
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read(size)
    except (tf.errors.OpError, OSError) as error:
        message = getattr(error, "message", None) or getattr(error, "strerror", None) or ""
        raise UnreadableImageError(f"cannot read file ({message.strip()})", "unreadable") from None


def to_jpeg_bytes(data: bytes) -> bytes:
    """Returns JPEG bytes the serving signature can decode.

    The same normalisation the dataset build applies (`preprocessing.media.images.normalise`),
    so a served image reaches the model as a training image did: a valid upright RGB
    JPEG keeps its bytes; PNG, WebP, grayscale, CMYK or EXIF-rotated images are
    converted once to an upright RGB JPEG.

    Raises:
        UnreadableImageError: when the bytes are not a complete image. The message
            never quotes the file's bytes (they may be anything: a password file
            behind a link, say).
    """
    try:
        return images.normalise(data).jpeg
    except images.NotAnImageError:
        raise UnreadableImageError(
            f"not a readable image (no image format recognised in {len(data)} bytes)",
            images.NotAnImageError.reason,
        ) from None
    except images.InvalidImageError as error:
        raise UnreadableImageError(
            f"not a readable image ({type(error).__name__}: {error})", error.reason
        ) from None


def read_image(path: str, max_bytes: int = images.DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Reads a local or gs:// file and returns JPEG bytes; UnreadableImageError says why not."""
    return to_jpeg_bytes(read_bytes(path, max_bytes))


# ---------------------------------------------------------------------------- the model


def check_export(export_dir: str) -> export.DetectorMetadata:
    """Reads detector.json and checks a SavedModel is beside it, before any work starts.

    Raises:
        FileNotFoundError: naming the folder and what was expected, so a wrong
            --export_dir costs one line, not a traceback from a worker.
    """
    metadata = export.read_metadata(export_dir)
    if not tf.saved_model.contains_saved_model(export_dir):
        raise FileNotFoundError(
            f"{export_dir} has {export.METADATA_FILENAME} but no saved_model.pb: not a complete "
            "export (expected <model_dir>/export written by trainer.task)."
        )
    return metadata


def score_with_retry(
    score: Callable[[Sequence[bytes]], Sequence[float]], jpegs: Sequence[bytes]
) -> list[float | None]:
    """p_fake per JPEG, None for one the model cannot decode.

    Pillow accepts a few files TensorFlow's JPEG decoder does not: the batch is
    scored at once, and only if the model rejects it, one image at a time, so the
    failure is pinned on its file instead of losing the whole batch.
    """
    if not jpegs:
        return []
    try:
        return [float(p) for p in score(jpegs)]
    except tf.errors.InvalidArgumentError:
        if len(jpegs) == 1:
            return [None]
        return [value for jpeg in jpegs for value in score_with_retry(score, [jpeg])]


def serving_scorer(serve) -> Callable[[Sequence[bytes]], list[float]]:
    """Wraps the SavedModel's serving signature: JPEG bytes in, p_fake list out."""

    def score(jpegs: Sequence[bytes]) -> list[float]:
        outputs = serve(**{export.INPUT_NAME: tf.constant(list(jpegs), dtype=tf.string)})
        return outputs[export.OUTPUT_NAME].numpy().reshape(-1).tolist()

    return score


class Detector:
    """The exported detector and its metadata, scoring batches of JPEG bytes."""

    def __init__(self, export_dir: str, threshold: float | None = None):
        self.export_dir = export_dir
        self.metadata = check_export(export_dir)
        self.threshold = (
            self.metadata.threshold
            if threshold is None
            else schema.check_threshold(threshold, "--threshold")
        )
        self._loaded = export.load_export(export_dir)  # Owns the variables: kept.
        self._score = serving_scorer(self._loaded.signatures[export.SIGNATURE_NAME])
        logging.info(
            "Loaded %s (image_size=%d, threshold=%.4f from %s).",
            export_dir,
            self.metadata.image_size,
            self.threshold,
            self.metadata.threshold_source if threshold is None else "--threshold",
        )

    def score(self, jpegs: Sequence[bytes]) -> np.ndarray:
        """p_fake for each JPEG; raises tf.errors.InvalidArgumentError if one cannot be decoded."""
        if not jpegs:
            return np.zeros([0], np.float32)
        return np.asarray(self._score(jpegs), np.float32)

    def score_safely(self, jpegs: Sequence[bytes]) -> list[float | None]:
        """p_fake per JPEG, None for one the model cannot decode (see `score_with_retry`)."""
        return score_with_retry(self._score, jpegs)

    def label(self, p_fake: float) -> str:
        return metrics.label_name(p_fake, self.threshold)

    def score_items(self, items: Sequence[tuple[str, bytes]]) -> list[Prediction]:
        """Scores (path, jpeg) pairs as one batch; each as given (a crop)."""
        return [
            Prediction(path, p_fake=p, label=self.label(p))
            if p is not None
            else Prediction.reject(path, UNDECODABLE, "undecodable", kind="crop")
            for (path, _), p in zip(items, self.score_safely([jpeg for _, jpeg in items]))
        ]


def predict_files(
    detector: Detector, files: Sequence[str], batch_size: int = 32
) -> Iterator[Prediction]:
    """Yields one Prediction per file, scored as given (a crop), in order, in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    for start in range(0, len(files), batch_size):
        batch: list[tuple[str, bytes]] = []
        outcomes: dict[str, Prediction] = {}
        for path in files[start : start + batch_size]:
            try:
                batch.append((path, read_image(path)))
            except UnreadableImageError as error:
                logging.warning("Skipping %s: %s", path, error)
                outcomes[path] = Prediction.reject(path, str(error), error.reason, kind="crop")
        for result in detector.score_items(batch):
            outcomes[result.path] = result
        for path in files[start : start + batch_size]:
            yield outcomes[path]
