"""Is that process still the one we mean? Pid + start time, for owner records and watchdogs.

A process id alone is reused after the process ends; Linux also records when each
process started (`/proc/<pid>/stat`, field 22, clock ticks since boot), and the
pair names one process for as long as the machine runs. Pure Python: the Beam
worker wrapper imports this before anything heavy.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> str:
    """The process' start time in clock ticks since boot (Linux); '' when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # The command name (field 2) may hold spaces and ')': fields after the last
            # ')' are fixed, and the start time is the 20th of them.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def boot_id() -> str:
    """This boot's id (Linux), to tell a pid recorded before a restart; '' elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def running(pid: int, start: str = "") -> bool:
    """Whether `pid` runs and, when `start` is known (Linux), is that same process."""
    if pid <= 0:
        return False
    if start and os.path.exists("/proc/self/stat"):
        return start_time(pid) == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
