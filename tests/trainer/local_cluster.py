"""A MultiWorkerMirroredStrategy cluster of local processes (TF_CONFIG on 127.0.0.1).

The multi-worker tests start the same command in every worker process, each
with its own TF_CONFIG, and wait for all of them; a hung cluster (collectives
that do not match) ends at the timeout with every process killed.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    """`count` loopback ports free at the time of asking."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(args: list[str], *, workers: int = 2, timeout: float) -> list[tuple]:
    """Runs `python <args>` as each of `workers` workers; [(returncode, stdout, stderr)]."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    processes = []
    for index in range(workers):
        tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_CONFIG": json.dumps(tf_config),
        }
        processes.append(
            subprocess.Popen(
                [sys.executable, *args],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs)]
