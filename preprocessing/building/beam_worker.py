"""One Beam SDK worker process that ends when the job that started it ends.

Beam's local multi-processing runner starts each worker as
`python -m apache_beam.runners.worker.sdk_worker_main`. When the job's main
process (a dataset build, a batch scoring run) is killed (SIGKILL, an
out-of-memory kill), those workers are adopted by PID 1 and keep running, about
190 MB each, until someone finds them. The local runner
(`preprocessing.building.runners`) starts workers through this module instead,
which

- asks Linux to send it SIGKILL when its parent dies (`PR_SET_PDEATHSIG`; the
  shell Beam starts it with is replaced by `exec`, so the parent is the job's
  thread that waits for this worker);
- watches the job's process id and start time once a second and exits when
  that process is gone (any POSIX system, and the case where the parent died
  before the first line of this module ran);
- sends its own stderr (TensorFlow's start-up lines, the Python worker's INFO
  lines) to the tool's log file when one is given, so that the console shows
  the tool's own lines;

then runs Beam's worker exactly as Beam would.

    python -m preprocessing.building.beam_worker --parent_pid=N --parent_start=T [--log_file=PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time

from preprocessing import processes

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """PR_SET_PDEATHSIG(SIGKILL); False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch(pid: int, start: str = "", interval_s: float = 1.0) -> threading.Thread:
    """Starts a daemon thread that ends this process when `pid` stops running."""

    def loop():
        while processes.running(pid, start):
            time.sleep(interval_s)
        os._exit(1)  # pylint: disable=protected-access  (no cleanup owed to a dead job)

    thread = threading.Thread(target=loop, name="watch-parent-process", daemon=True)
    thread.start()
    return thread


def command(log_file: str | None = None) -> str:
    """The shell command that starts one worker owned by this process."""
    parts = [
        "exec",
        sys.executable,
        "-m",
        __name__,
        f"--parent_pid={os.getpid()}",
        f"--parent_start={processes.start_time(os.getpid())}",
    ]
    if log_file:
        parts.append(f"--log_file={log_file}")
    return " ".join(_quote(part) for part in parts)


def _quote(text: str) -> str:
    import shlex  # pylint: disable=import-outside-toplevel

    return text if text == "exec" else shlex.quote(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent_pid", type=int, required=True)
    parser.add_argument("--parent_start", default="")
    parser.add_argument("--log_file", default="")
    args = parser.parse_args(argv)
    if args.log_file:
        fd = os.open(args.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    die_with_parent()
    if not processes.running(args.parent_pid, args.parent_start):
        os._exit(1)  # pylint: disable=protected-access
    watch(args.parent_pid, args.parent_start)
    from apache_beam.runners.worker import sdk_worker_main  # pylint: disable=import-outside-toplevel

    sdk_worker_main.main([sys.argv[0]])


if __name__ == "__main__":
    main()
