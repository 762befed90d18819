"""Where `dfd-predict` writes: checked before any scoring, filled as results come.

Two promises, both about not losing work:

- Every output is checked before the first file is scored (`check_output`,
  `check_folder`): a folder given as `--output`, a parent that is a file, a
  read-only folder or an unreachable `gs://` bucket cost one line at start-up,
  not a traceback after an hour of scoring.
- `ResultsWriter` appends each record as it is produced and flushes it, so the
  first rows of a long run are readable within seconds and a late failure (a
  full disk, a killed process, a bad `--explain` file) keeps what was done.
  A `gs://` object cannot be appended to: the records go to a local temporary
  file, copied to the bucket when the writer closes (at the end, or at a
  failure, since `run` closes it in a `finally`). The bucket is written once
  at start-up too, empty, so that a wrong bucket fails before the work.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile

import tensorflow as tf

from preprocessing import cli, paths

OUTPUT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("path", "kind", "status", "p_fake", "label", "faces", "error")


def output_format_of(output: str, output_format: str | None = None) -> str:
    """`output_format`, or the one `output`'s extension names; ValueError says how to choose."""
    chosen = (output_format or os.path.splitext(output)[1].lstrip(".")).lower()
    if chosen not in OUTPUT_FORMATS:
        raise ValueError(
            f"Cannot tell the format of --output={output!r}: use a .csv or .jsonl name, "
            f"or --output_format={'|'.join(OUTPUT_FORMATS)}."
        )
    return chosen


def _is_remote(path: str) -> bool:
    return "://" in path


def check_folder(folder: str, flag: str) -> None:
    """Refuses a local folder that cannot be created or written, naming `flag`; creates nothing.

    The nearest existing ancestor must be a writable folder (a file there, or a
    read-only folder, would fail only when the first file is written). A mistyped
    gs:// URL is refused by the project's one rule (`paths.looks_like_gcs_typo`)
    rather than taken for a local folder named `gs:`. Remote folders are checked
    when written (`ResultsWriter` writes its bucket at once).
    """
    if paths.looks_like_gcs_typo(folder):
        raise cli.UserError(
            f"{flag}={folder}: not a valid Cloud Storage URL; write gs://BUCKET/PATH."
        )
    if _is_remote(folder):
        return
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise cli.UserError(
            f"{flag}={folder}: {path} is a file, not a folder; choose another {flag}."
        )
    if not os.access(path, os.W_OK | os.X_OK):
        raise cli.UserError(
            f"{flag}={folder}: cannot write in {path} (permission denied); "
            f"choose a writable {flag}."
        )


def check_output(output: str) -> None:
    """Refuses an `--output` that names a folder or sits where nothing can be written."""
    if not _is_remote(output) and os.path.isdir(output):
        raise cli.UserError(
            f"--output={output} is a folder; give a file name, e.g. "
            f"--output={os.path.join(output, 'scores.csv')}."
        )
    check_folder(os.path.dirname(output) or ".", "--output")


def _csv_row(record: dict, parts: int | str) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
    writer.writerow({**record, "faces": parts})
    return text.getvalue()


def parts_of(record: dict) -> int | str:
    """The `faces` column: faces of a photo, tracks of a video, empty otherwise."""
    if record.get("kind") == "photo":
        return len(record.get("faces", ()))
    if record.get("kind") == "video":
        return len(record.get("tracks", ()))
    return ""


class ResultsWriter:
    """Writes one record per input to `output` (CSV or JSONL) as each is produced.

    Use as a context manager, or call `close()`; see the module docstring for gs://.
    """

    def __init__(self, output: str, output_format: str | None = None):
        self.output = output
        self.format = output_format_of(output, output_format)
        check_output(output)
        self._temp = None
        try:
            if _is_remote(output):
                with tf.io.gfile.GFile(output, "w") as probe:
                    probe.write("")  # Fails now, not after the work, if the bucket is wrong.
                self._temp = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed in close())
                    "w", suffix=f".{self.format}", delete=False, encoding="utf-8"
                )
                self._file = self._temp
            else:
                parent = os.path.dirname(output)
                if parent:
                    os.makedirs(parent, exist_ok=True)
                self._file = open(output, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except (tf.errors.OpError, OSError) as error:
            message = getattr(error, "message", None) or getattr(error, "strerror", None)
            raise cli.UserError(
                f"--output={output}: cannot be written ({cli.one_line(message or error)}); "
                "choose a writable place."
            ) from None
        if self.format == "csv":
            self._file.write(",".join(CSV_COLUMNS) + "\r\n")
            self._file.flush()

    def write(self, record: dict) -> None:
        if self.format == "jsonl":
            self._file.write(json.dumps(record) + "\n")
        else:
            self._file.write(_csv_row(record, parts_of(record)))
        self._file.flush()

    def close(self) -> None:
        """Closes the file; a gs:// output gets the records written so far, then the temp goes."""
        if self._file.closed:
            return
        self._file.close()
        if self._temp is not None:
            try:
                tf.io.gfile.copy(self._temp.name, self.output, overwrite=True)
            except (tf.errors.OpError, OSError) as error:
                raise cli.UserError(
                    f"--output={self.output}: the copy to the bucket failed "
                    f"({cli.one_line(error)}); the records are kept in {self._temp.name}."
                ) from None
            os.unlink(self._temp.name)

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
