"""A real `dfd-serve` process on a free 127.0.0.1 port, for the serving tests (no mocks)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def free_port() -> int:
    """A port free on 127.0.0.1 now (for a server another one must know in advance)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`python -m trainer.serve --port=<port> <flags>`; `url` is read from its start-up line.

    `wait=False` returns at once (start several, then `wait_until_up()` on each).
    """

    def __init__(
        self,
        flags: list[str],
        log_dir: str,
        name: str = "server",
        port: int = 0,
        wait: bool = True,
    ):
        self.stdout_path = os.path.join(log_dir, f"{name}.stdout")
        self.stderr_path = os.path.join(log_dir, f"{name}.stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "trainer.serve",
                    "--host=127.0.0.1",
                    f"--port={port}",
                    *flags,
                ],
                stdout=out,
                stderr=err,
                cwd=REPO,
            )
        if wait:
            self.wait_until_up()

    def wait_until_up(self, timeout: float = 180) -> ServerProcess:
        self.url = self._wait_for_url(timeout)
        self.start_line = self.stdout().splitlines()[0]
        return self

    def stdout(self) -> str:
        with open(self.stdout_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def _wait_for_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"at (http://127\.0\.0\.1:\d+)/", self.stdout())
            if found:
                url = found.group(1)
                while time.monotonic() < deadline:
                    try:
                        if requests.get(f"{url}/healthz", timeout=2).ok:
                            return url
                    except requests.ConnectionError:
                        pass
                    time.sleep(0.1)
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"dfd-serve did not start:\n{self.stderr()[-3000:]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (a graceful stop) and the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
