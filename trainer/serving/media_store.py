"""The private temp folder: one sub-folder per analysis, kept for a limited time.

Created with mode 0700 under the system temp dir (`tempfile.mkdtemp`); each
analysis gets a folder named by a random token (`secrets.token_urlsafe`), the
upload is written there under a fixed name and deleted after the analysis,
and the pictures it produced are served at `/v1/media/<token>/<name>` until
`ttl_seconds` pass. Only names this store registered are served: neither a
client's file name nor a URL part ever becomes a path.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time


class MediaStore:
    def __init__(self, ttl_seconds: float, root: str | None = None):
        self.ttl = ttl_seconds
        self.root = root or tempfile.mkdtemp(prefix="dfd-serve-")
        os.chmod(self.root, 0o700)
        self._files: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, str]:
        """(token, folder) for one analysis."""
        token = secrets.token_urlsafe(16)
        folder = os.path.join(self.root, token)
        os.mkdir(folder, 0o700)
        return token, folder

    def keep(self, token: str, files: dict[str, str]) -> None:
        """Serves `files` ({name: path inside the token's folder}) until the TTL passes."""
        with self._lock:
            self._files[token] = (time.monotonic() + self.ttl, dict(files))

    def lookup(self, token: str, name: str) -> str | None:
        with self._lock:
            entry = self._files.get(token)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1].get(name)

    def discard(self, token: str) -> None:
        with self._lock:
            self._files.pop(token, None)
        shutil.rmtree(os.path.join(self.root, token), ignore_errors=True)

    def sweep(self) -> int:
        """Deletes expired folders; returns how many."""
        now = time.monotonic()
        with self._lock:
            expired = [token for token, (until, _) in self._files.items() if until < now]
        for token in expired:
            self.discard(token)
        return len(expired)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
