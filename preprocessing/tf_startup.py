"""Imports TensorFlow with its C++ start-up notes kept off the console.

TensorFlow 2.21 prints, at import and before its C++ logging is initialised,
"WARNING: All log messages before absl::InitializeLog() is called are written
to STDERR", "oneDNN custom operations are on ..." and "This TensorFlow binary
is optimized to use available CPU instructions ...", twice, whatever
`TF_CPP_MIN_LOG_LEVEL` says, so every command-line tool would start with those
eight lines before its own. `import_tensorflow()` imports TensorFlow with file
descriptor 2 captured, keeps those INFO notes (`startup_notes()`, e.g. for a log
file), and passes on everything else (warnings and errors, e.g. a missing CUDA
library) to stderr at once. With `--verbosity=1` (or more) on the command line
nothing is captured: everything shows, as asked.

It also chooses `TF_CPP_MIN_LOG_LEVEL` before TensorFlow reads it: 2 (errors
only: no "Local rendezvous is aborting" lines at every end of input) unless the
command line asks for `--verbosity` >= 1 or the variable is already set.

The trainer's tools call it first thing, by importing
`preprocessing.quiet_tensorflow` above their other imports; the dataset
launchers capture the same lines into their log file instead
(`preprocessing.tool_logging`).
"""

from __future__ import annotations

import os
import re
import sys

# A record of absl's C++ log format ("I0000 00:00:..." = INFO) or the notice before init.
_RECORD_START = re.compile(r"^(?:[IWEF]\d{4} |WARNING: All log messages before absl::)")
_INFO_RECORD = re.compile(r"^(?:I\d{4} |WARNING: All log messages before absl::)")

_startup_notes: list[str] = []


def verbosity_in_argv(argv: list[str]) -> int:
    """The `--verbosity`/`-v` value on a command line, before absl parses it (0 if absent)."""
    for index, arg in enumerate(argv):
        for prefix in ("--verbosity=", "-v="):
            if arg.startswith(prefix):
                value = arg[len(prefix) :]
                return int(value) if value.lstrip("-").isdigit() else 0
        if arg in ("--verbosity", "-v") and index + 1 < len(argv):
            value = argv[index + 1]
            return int(value) if value.lstrip("-").isdigit() else 0
    return 0


def split_notes(text: str) -> tuple[str, str]:
    """(INFO notes, everything else) of captured C++ log text, record by record.

    A record starts with absl's severity letter and date ("I0000 00:00:...") or
    the pre-initialisation notice; lines that start neither continue the record
    before them (e.g. the list of CPU instructions).
    """
    notes, others = [], []
    current = others
    for line in text.splitlines(keepends=True):
        if _RECORD_START.match(line):
            current = notes if _INFO_RECORD.match(line) else others
        current.append(line)
    return "".join(notes), "".join(others)


def import_tensorflow() -> None:
    """Imports TensorFlow once per process, keeping its start-up INFO notes off stderr."""
    if "tensorflow" in sys.modules:
        return
    if verbosity_in_argv(sys.argv) > 0:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        import tensorflow  # noqa: F401  (everything shows, as asked)

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from preprocessing import tool_logging  # pylint: disable=import-outside-toplevel

    with tool_logging.capture_native_stderr() as captured:
        import tensorflow  # noqa: F401
    notes, others = split_notes("".join(captured))
    _startup_notes.append(notes)
    if others:
        sys.stderr.write(others)
        sys.stderr.flush()


def startup_notes() -> str:
    """The INFO notes TensorFlow printed at import, if `import_tensorflow` kept them."""
    return "".join(_startup_notes)
