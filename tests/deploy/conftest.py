"""A real Cloud Storage emulator on 127.0.0.1 for the storage tests (never a mock).

One `gcp-storage-emulator` per test process (pytest-xdist runs several), in memory,
on a free port; each test gets its own bucket, so tests cannot see each other's objects.
"""

import socket
import uuid

import pytest

PROJECT = "dfd-test"


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_emulator(port: int, default_bucket: str | None = None):
    """Starts an in-memory emulator on 127.0.0.1:`port` and returns it (call .stop())."""
    from gcp_storage_emulator.server import create_server  # pylint: disable=import-outside-toplevel

    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=default_bucket)
    server.start()
    return server


@pytest.fixture(scope="session")
def emulator_host():
    """The URL of this process's emulator, started once and stopped at the end."""
    port = free_port()
    server = start_emulator(port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs_client(emulator_host, monkeypatch):
    """A google-cloud-storage client talking to the emulator (STORAGE_EMULATOR_HOST)."""
    from preprocessing import gcs  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_host)
    return gcs.make_client(PROJECT)


@pytest.fixture
def bucket(gcs_client):
    """A fresh, empty bucket name in the emulator."""
    name = f"dfd-{uuid.uuid4().hex[:12]}"
    gcs_client.create_bucket(name)
    return name


class SlowProxy:
    """A TCP relay to the emulator that delays every answer: a slow network, for real.

    Lets a test kill a transfer at a known point: it counts the requests that pass
    (an upload request is sent only after the previous one was answered, so the
    count says how many completed), and the delay leaves time to act before the rest.
    """

    def __init__(self, upstream_port: int, delay_s: float = 0.05):
        import threading  # pylint: disable=import-outside-toplevel

        self._upstream_port = upstream_port
        self._delay_s = delay_s
        self._lock = threading.Lock()
        self._seen = b""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def count(self, request_prefix: bytes) -> int:
        """How many requests starting with `request_prefix` went upstream so far."""
        with self._lock:
            return self._seen.count(b"\n" + request_prefix) + self._seen.startswith(request_prefix)

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        import threading  # pylint: disable=import-outside-toplevel

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source, target, delay: bool) -> None:
        import time  # pylint: disable=import-outside-toplevel

        try:
            while data := source.recv(1 << 16):
                if delay:
                    time.sleep(self._delay_s)
                else:
                    with self._lock:  # request lines only: bodies are not kept
                        self._seen += b"".join(
                            line[:80] + b"\n"
                            for line in data.split(b"\n")
                            if line[:5] in (b"PUT /", b"POST ", b"GET /")
                        )
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def slow_proxy(emulator_host):
    proxy = SlowProxy(int(emulator_host.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()
