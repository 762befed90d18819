"""A tool's console shows the project's own lines; everything else goes to a log file.

Left alone, a Beam job floods the console: TensorFlow's C++ start-up lines (in
the main process and in every Beam worker), Beam's type-hint and gRPC INFO
lines, every worker log line relayed twice, TFDS' progress bars; a 240-image
build prints about 200 lines, of which a user needs a dozen from this project.
So a tool that runs inside `log_to_file` (the dataset launchers, batch scoring):

- writes every log record (INFO and up, any library, worker output included) to
  a log file in the output folder, whose path is printed first;
- shows on the console only records from the project's own modules, plus
  errors from anyone; `--verbosity=1` (or more) shows everything again;
- keeps printed progress lines (TFDS' "Downloading and preparing dataset...")
  out of stdout, which holds the results.

TensorFlow's C++ lines at import cannot be switched off by environment variable
in TF 2.21 (the oneDNN notice ignores TF_CPP_MIN_LOG_LEVEL): `capture_native_stderr`
collects what file descriptor 2 receives during the import, and `log_to_file`
writes it to the log file once that exists.

Reusable by any tool: the project's packages are passed in, nothing here
knows about a dataset.
"""

from __future__ import annotations

import contextlib
import io
import logging as std_logging
import os
import sys
import tempfile

from absl import logging

# Records of this logger go to the log file only, e.g. a tool's full configuration.
DETAILS_LOGGER = "dfd.details"
_FORMAT = "%(levelname).1s%(asctime)s %(process)d %(filename)s:%(lineno)d] %(message)s"


def details() -> std_logging.Logger:
    """The logger for lines that belong in the log file but not on the console."""
    return std_logging.getLogger(DETAILS_LOGGER)


class ProjectOnly(std_logging.Filter):
    """Passes records from files under `project_dirs`, and errors from anyone else.

    Records of the details logger never pass: they are for the log file.
    """

    def __init__(self, project_dirs):
        super().__init__()
        self._dirs = tuple(os.path.join(os.path.realpath(d), "") for d in project_dirs)

    def filter(self, record: std_logging.LogRecord) -> bool:
        if record.name == DETAILS_LOGGER:
            return False
        if record.levelno >= std_logging.ERROR:
            return True
        return os.path.realpath(record.pathname).startswith(self._dirs)


@contextlib.contextmanager
def capture_native_stderr():
    """Collects what file descriptor 2 receives (C++ logging); yields a list, filled on exit."""
    captured: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield captured
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))
            if failed:  # What the native code said may explain the failure: show it.
                sys.stderr.write(captured[-1])


@contextlib.contextmanager
def log_to_file(log_path: str, *, project_dirs, verbose: bool = False, preamble: str = ""):
    """Sends all records to `log_path` and keeps the console to the project's lines.

    Args:
        log_path: the log file (local or gs://). On gs:// the records go to a local
            temporary file first, copied there when the block ends.
        project_dirs: folders of the project's packages (their records stay on the console).
        verbose: keep every record on the console too.
        preamble: text to put at the top of the file (e.g. captured C++ start-up lines).

    Yields:
        The local path that worker processes may append their stderr to.
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    remote = "://" in log_path
    if remote:
        fd, local_path = tempfile.mkstemp(prefix="dfd-log-", suffix=".log")
        os.close(fd)
    else:
        local_path = log_path
        tf.io.gfile.makedirs(os.path.dirname(local_path))
    if preamble:
        with open(local_path, "a", encoding="utf-8") as f:
            f.write(preamble if preamble.endswith("\n") else preamble + "\n")
    handler = std_logging.FileHandler(local_path, encoding="utf-8")
    handler.setFormatter(std_logging.Formatter(_FORMAT, "%m%d %H:%M:%S"))
    handler.setLevel(std_logging.INFO)
    root = std_logging.getLogger()
    root.addHandler(handler)
    console = logging.get_absl_handler()
    console_filter = ProjectOnly(project_dirs)
    if not verbose:
        console.addFilter(console_filter)
    std_logging.captureWarnings(True)
    details().setLevel(std_logging.INFO)
    previous_level = root.level
    root.setLevel(min(previous_level or std_logging.INFO, std_logging.INFO))
    try:
        with contextlib.redirect_stdout(_LogWriter(details())) if not verbose else _nothing():
            yield local_path
    finally:
        root.setLevel(previous_level)
        std_logging.captureWarnings(False)
        console.removeFilter(console_filter)
        root.removeHandler(handler)
        handler.close()
        if remote:
            tf.io.gfile.makedirs(log_path.rsplit("/", 1)[0])
            tf.io.gfile.copy(local_path, log_path, overwrite=True)
            os.remove(local_path)


@contextlib.contextmanager
def _nothing():
    yield


class _LogWriter(io.TextIOBase):
    """A file-like object that turns printed lines into log records."""

    def __init__(self, logger: std_logging.Logger):
        super().__init__()
        self._logger = logger
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if line.strip():
                self._logger.info("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._logger.info("%s", self._pending)
        self._pending = ""
