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
