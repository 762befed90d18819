r"""dfd-storage: stage datasets and artifacts on Google Cloud Storage.

Usage:
    dfd-storage upload LOCAL_FOLDER_OR_FILE gs://BUCKET/PREFIX   # e.g. the Kaggle zip
    dfd-storage download gs://BUCKET/PREFIX LOCAL_FOLDER          # e.g. a model_dir/export
    dfd-storage verify LOCAL_FOLDER_OR_FILE gs://BUCKET/PREFIX    # compare CRC32C checksums
    dfd-storage check-writable gs://BUCKET/PREFIX                 # fail fast before a long job

Why a command of our own rather than `gcloud storage cp`: a 140k-image upload from a
laptop gets interrupted, and restarting it must not send the same files again. Here
every transfer compares size and CRC32C with what is already there and skips what
matches; files at or above --resumable_threshold_mib go up through a resumable session
whose URL is kept in --state_dir, so a killed upload of the multi-GB Kaggle zip restarts
from its last chunk, not from byte 0. Transient errors (429, 5xx, dropped connections)
are retried with exponential backoff; every transferred file is checked against the
CRC32C that Cloud Storage computed.

Runtime: bound by the network uplink (not measured here); --workers sets how many
files move at once.

Credentials: Application Default Credentials; nothing is read from files in this repo.
Prints a one-line JSON summary (or, for verify, one line per problem) on stdout.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import threading

from absl import app, flags, logging
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.storage import exceptions as storage_exceptions
import requests

from preprocessing import cli, gcs

MIB = 1 << 20
# Resumable-upload chunks must be multiples of 256 KiB (Cloud Storage's rule).
CHUNK_ALIGNMENT = 256 << 10


class ChecksumMismatchError(RuntimeError):
    """A transferred file's CRC32C differs from the one Cloud Storage reports."""


@dataclasses.dataclass
class TransferStats:
    """What one upload or download did, file by file (names relative to the roots)."""

    transferred: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    # Resumable uploads that continued an earlier session: name -> byte offset resumed at.
    resumed: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_transferred: int = 0

    def summary(self) -> dict:
        return {
            "transferred": len(self.transferred),
            "skipped": len(self.skipped),
            "resumed": len(self.resumed),
            "bytes_transferred": self.bytes_transferred,
        }


@dataclasses.dataclass(frozen=True)
class RemoteObject:
    """The listing fields a transfer needs."""

    name: str
    size: int
    crc32c: str | None
    md5_hash: str | None


# --------------------------------------------------------------------------- listing


def _object_name(prefix: str, relative: str) -> str:
    return "/".join(p for p in (prefix, relative.replace(os.sep, "/")) if p)


def local_files(src: str) -> list[tuple[str, str]]:
    """(absolute path, relative name) for `src`: every file under a folder, or the file.

    A single file keeps its base name, so `upload archive.zip gs://b/raw` writes
    gs://b/raw/archive.zip.

    Raises:
        FileNotFoundError: naming `src` when it does not exist.
    """
    if os.path.isfile(src):
        return [(os.path.abspath(src), os.path.basename(src))]
    if not os.path.isdir(src):
        raise FileNotFoundError(f"No such local file or folder: {src!r}.")
    found = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            found.append((os.path.abspath(path), os.path.relpath(path, src)))
    return found


def list_remote(client, url: str, retry=None) -> dict[str, RemoteObject]:
    """The objects under `url`, keyed by name relative to it.

    `url` may name a folder-like prefix or one object; an object named exactly like
    the prefix is keyed by its base name.
    """
    bucket_name, prefix = gcs.parse_url(url)
    bucket = client.bucket(bucket_name)
    found = {}
    retry = retry or gcs.make_retry()
    for blob in client.list_blobs(bucket, prefix=f"{prefix}/" if prefix else None, retry=retry):
        relative = blob.name[len(prefix) + 1 :] if prefix else blob.name
        if relative and not relative.endswith("/"):
            found[relative] = RemoteObject(blob.name, int(blob.size), blob.crc32c, blob.md5_hash)
    if prefix:
        blob = bucket.get_blob(prefix, retry=retry)
        if blob is not None:
            found[os.path.basename(prefix)] = RemoteObject(
                blob.name, int(blob.size), blob.crc32c, blob.md5_hash
            )
    return found


def _same_content(
    local_path: str, remote: RemoteObject | None, local_crc: str | None = None
) -> bool:
    """Same size and CRC32C (MD5 when an object has no CRC32C); False when unsure."""
    if remote is None or os.path.getsize(local_path) != remote.size:
        return False
    if remote.crc32c:
        return (local_crc or gcs.crc32c_of_file(local_path)) == remote.crc32c
    if remote.md5_hash:
        return _md5_of_file(local_path) == remote.md5_hash
    return False  # Nothing to compare with: transfer again rather than guess.


def _md5_of_file(path: str, block_size: int = 8 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            digest.update(block)
    return base64.b64encode(digest.digest()).decode("ascii")


# --------------------------------------------------------------------------- upload


def _state_path(
    state_dir: str, bucket: str, name: str, local_path: str, size: int, crc: str
) -> str:
    key = hashlib.sha256(f"{bucket}/{name}|{local_path}|{size}|{crc}".encode()).hexdigest()
    return os.path.join(state_dir, f"{key}.json")


def _query_offset(session, url: str, size: int) -> tuple[int, dict | None]:
    """Asks a resumable session how much it holds: (next offset, object if complete).

    Returns (-1, None) when the session is gone (expired after a week, or cancelled).
    """
    response = session.put(url, headers={"Content-Range": f"bytes */{size}"}, data=b"")
    if response.status_code in (200, 201):
        return size, response.json()
    if response.status_code == 308:
        received = response.headers.get("Range")
        return (int(received.rsplit("-", 1)[1]) + 1 if received else 0), None
    if response.status_code in (404, 410):
        return -1, None
    _raise_for_status(response)
    raise RuntimeError(f"Unexpected status {response.status_code} from {url}.")


class _TransientHTTPError(ConnectionError):
    """A 408/429/5xx answer to a chunk, raised so that the backoff retry resends it."""


def _raise_for_status(response) -> None:
    if response.status_code in (408, 429) or response.status_code >= 500:
        raise _TransientHTTPError(f"HTTP {response.status_code}: {response.text[:200]}")
    response.raise_for_status()


def _resumable_upload(
    blob,
    local_path: str,
    size: int,
    crc: str,
    *,
    chunk_size: int,
    state_dir: str,
    retry,
    on_chunk: Callable[[str, int], None] | None,
    relative: str,
) -> tuple[dict, int]:
    """Uploads through a resumable session that survives the end of this process.

    The session URL is the only state: it is written to `state_dir` before the first
    byte goes out, and a later run that finds it asks the server how many bytes it
    holds and sends the rest. Session URLs authorise the upload by themselves (no
    credentials are stored); Cloud Storage expires them after a week.

    Returns:
        (the object's metadata as Cloud Storage reports it, the offset resumed from).
    """
    state_file = _state_path(state_dir, blob.bucket.name, blob.name, local_path, size, crc)
    session = requests.Session()
    url, offset, resource = None, 0, None
    if os.path.exists(state_file):
        with open(state_file, encoding="utf-8") as f:
            url = json.load(f)["session_url"]
        offset, resource = retry(_query_offset)(session, url, size)
        if offset < 0:
            logging.info("Resumable session for %s expired; starting over.", relative)
            url, offset = None, 0
    resumed_from = offset if url else 0
    if url is None:
        blob.crc32c = crc  # Cloud Storage rejects the object if the bytes do not match.
        url = blob.create_resumable_upload_session(
            size=size, content_type="application/octet-stream", checksum=None, retry=retry
        )
        os.makedirs(state_dir, exist_ok=True)
        with open(state_file + ".tmp", "w", encoding="utf-8") as f:
            json.dump(
                {
                    "session_url": url,
                    "object": f"gs://{blob.bucket.name}/{blob.name}",
                    "local_path": local_path,
                },
                f,
            )
        os.replace(state_file + ".tmp", state_file)
    elif resumed_from:
        logging.info("Resuming %s at byte %d of %d.", relative, resumed_from, size)

    failed_before = {"value": False}

    def send_next_chunk(position: int) -> tuple[int, dict | None]:
        # After a failed attempt the server may hold more (or less) than we think.
        if failed_before["value"]:
            position, done = _query_offset(session, url, size)
            if done is not None or position < 0:
                return position, done
        failed_before["value"] = True
        with open(local_path, "rb") as f:
            f.seek(position)
            chunk = f.read(chunk_size)
        last = position + len(chunk) - 1
        response = session.put(
            url,
            data=chunk,
            headers={
                "Content-Range": f"bytes {position}-{last}/{size}" if chunk else f"bytes */{size}"
            },
        )
        if response.status_code == 400 and "crc32c" in response.text.lower():
            os.remove(state_file)  # the session is spent; a rerun starts a new one
            raise ChecksumMismatchError(
                f"Cloud Storage rejected gs://{blob.bucket.name}/{blob.name}: the bytes it "
                f"received do not match {local_path}'s CRC32C {crc} ({response.text[:300]}). "
                "Fix: rerun the command; if it fails again, the file is changing while it "
                "is read."
            )
        _raise_for_status(response)
        failed_before["value"] = False
        if response.status_code in (200, 201):
            return size, response.json()
        if response.status_code == 308:
            received = response.headers.get("Range")
            return (int(received.rsplit("-", 1)[1]) + 1 if received else 0), None
        raise RuntimeError(f"Unexpected status {response.status_code} uploading {relative}.")

    while resource is None:
        offset, resource = retry(send_next_chunk)(offset)
        if offset < 0:
            raise RuntimeError(
                f"The resumable session for {relative} disappeared mid-upload; rerun the "
                "command to start a new one."
            )
        if on_chunk is not None and resource is None:
            on_chunk(relative, offset)
    os.remove(state_file)
    return resource, resumed_from


def upload(
    src: str,
    dst_url: str,
    *,
    client=None,
    workers: int = 8,
    chunk_size: int = 32 * MIB,
    resumable_threshold: int = 64 * MIB,
    state_dir: str | None = None,
    retry_deadline_s: float = 300.0,
    on_file_done: Callable[[str], None] | None = None,
    on_chunk: Callable[[str, int], None] | None = None,
) -> TransferStats:
    """Uploads a local folder or file under `dst_url`, sending only what is not there yet.

    Args:
        src: a local folder (uploaded recursively) or one file (e.g. the Kaggle zip).
        dst_url: gs://BUCKET[/PREFIX]; files land at PREFIX/<path relative to src>.
        client: a google.cloud.storage.Client; one on ADC by default.
        workers: files transferred at once.
        chunk_size: bytes per request of a resumable upload (a multiple of 256 KiB).
        resumable_threshold: files at least this big use a resumable session that a
            later run continues; smaller ones go up in one request.
        state_dir: where resumable session URLs are kept between runs.
        retry_deadline_s: how long one request is retried on transient errors.
        on_file_done, on_chunk: progress hooks (relative name; and byte offset).

    Returns:
        TransferStats.

    Raises:
        ValueError, FileNotFoundError: naming the bad argument.
        ChecksumMismatchError: when Cloud Storage reports other bytes than were sent.
    """
    if chunk_size <= 0 or chunk_size % CHUNK_ALIGNMENT:
        raise ValueError(
            f"chunk_size={chunk_size} must be a positive multiple of 256 KiB "
            f"({CHUNK_ALIGNMENT} bytes)."
        )
    if workers < 1:
        raise ValueError(f"workers={workers} must be at least 1.")
    bucket_name, prefix = gcs.parse_url(dst_url)
    files = local_files(src)
    client = client or gcs.make_client()
    retry = gcs.make_retry(retry_deadline_s)
    state_dir = state_dir or default_state_dir()
    remote = list_remote(client, dst_url, retry)
    bucket = client.bucket(bucket_name)
    stats = TransferStats()
    lock = threading.Lock()

    def upload_one(local_path: str, relative: str) -> str:
        size = os.path.getsize(local_path)
        crc = gcs.crc32c_of_file(local_path)
        if _same_content(local_path, remote.get(relative.replace(os.sep, "/")), crc):
            with lock:
                stats.skipped.append(relative)
            return relative
        blob = bucket.blob(_object_name(prefix, relative))
        if size >= resumable_threshold:
            resource, resumed_from = _resumable_upload(
                blob,
                local_path,
                size,
                crc,
                chunk_size=chunk_size,
                state_dir=state_dir,
                retry=retry,
                on_chunk=on_chunk,
                relative=relative,
            )
            remote_crc = resource.get("crc32c")
        else:
            resumed_from = 0
            try:
                blob.upload_from_filename(local_path, checksum="crc32c", retry=retry)
            except storage_exceptions.DataCorruption as error:
                raise ChecksumMismatchError(
                    f"Cloud Storage received other bytes than {local_path} holds ({error}). "
                    "Fix: rerun the command; it sends the file again."
                ) from error
            remote_crc = blob.crc32c
        if remote_crc != crc:
            raise ChecksumMismatchError(
                f"gs://{bucket_name}/{blob.name} has CRC32C {remote_crc} but {local_path} has "
                f"{crc}: the file changed during the upload or the bytes were corrupted in "
                "transit. Fix: rerun the command; it sends the file again."
            )
        with lock:
            stats.transferred.append(relative)
            stats.bytes_transferred += size - resumed_from
            if resumed_from:
                stats.resumed[relative] = resumed_from
        return relative

    _run_parallel(upload_one, files, workers, on_file_done)
    logging.info("Upload %s -> %s: %s", src, dst_url, stats.summary())
    return stats


# --------------------------------------------------------------------------- download


def download(
    src_url: str,
    dst: str,
    *,
    client=None,
    workers: int = 8,
    retry_deadline_s: float = 300.0,
    on_file_done: Callable[[str], None] | None = None,
) -> TransferStats:
    """Downloads every object under `src_url` into the folder `dst`, verifying CRC32C.

    Files already present with the same size and CRC32C are skipped, so an interrupted
    download resumes where it stopped. Each object lands under a temporary name and is
    renamed only after its checksum matched, so a partial file never looks complete.

    Raises:
        FileNotFoundError: when nothing exists under `src_url`.
        ValueError: when an object name would escape `dst` (`..` parts).
        ChecksumMismatchError: when the received bytes differ from what GCS reports.
    """
    client = client or gcs.make_client()
    retry = gcs.make_retry(retry_deadline_s)
    remote = list_remote(client, src_url, retry)
    if not remote:
        raise FileNotFoundError(
            f"No objects under {src_url}: check the path (gsutil-style "
            f"`gcloud storage ls {src_url}`)."
        )
    bucket = client.bucket(gcs.parse_url(src_url)[0])
    root = os.path.abspath(dst)
    stats = TransferStats()
    lock = threading.Lock()
    items = []
    for relative, obj in sorted(remote.items()):
        target = os.path.abspath(os.path.join(root, relative))
        if os.path.commonpath([root, target]) != root:
            raise ValueError(
                f"Object gs://{bucket.name}/{obj.name} would be written outside "
                f"{dst}; refusing to download it."
            )
        items.append((obj, relative, target))

    def download_one(obj: RemoteObject, relative: str, target: str) -> str:
        if os.path.isfile(target) and _same_content(target, obj):
            with lock:
                stats.skipped.append(relative)
            return relative
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(target))
        os.close(fd)
        try:
            try:
                bucket.blob(obj.name).download_to_filename(partial, checksum="crc32c", retry=retry)
            except storage_exceptions.DataCorruption as error:
                raise ChecksumMismatchError(
                    f"Downloaded gs://{bucket.name}/{obj.name} does not match the CRC32C "
                    f"Cloud Storage sent with it ({error}). Fix: rerun the command."
                ) from error
            received = gcs.crc32c_of_file(partial)
            if obj.crc32c and received != obj.crc32c:
                raise ChecksumMismatchError(
                    f"Downloaded gs://{bucket.name}/{obj.name} has CRC32C {received}, Cloud "
                    f"Storage reports {obj.crc32c}. Fix: rerun the command; if it persists the "
                    "object changed while it was read."
                )
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        with lock:
            stats.transferred.append(relative)
            stats.bytes_transferred += obj.size
        return relative

    _run_parallel(download_one, items, workers, on_file_done)
    logging.info("Download %s -> %s: %s", src_url, dst, stats.summary())
    return stats


# --------------------------------------------------------------------------- verify


def verify(local: str, url: str, *, client=None) -> list[str]:
    """Compares a local folder or file with the objects under `url`.

    Returns:
        One line per problem (missing, size or CRC32C mismatch, extra object); empty
        when both sides hold the same bytes.
    """
    client = client or gcs.make_client()
    remote = list_remote(client, url)
    problems = []
    seen = set()
    for local_path, relative in local_files(local):
        key = relative.replace(os.sep, "/")
        seen.add(key)
        obj = remote.get(key)
        if obj is None:
            problems.append(f"missing in {url}: {key}")
        elif os.path.getsize(local_path) != obj.size:
            problems.append(
                f"size mismatch: {key}: local {os.path.getsize(local_path)} "
                f"bytes, remote {obj.size} bytes"
            )
        elif not _same_content(local_path, obj):
            problems.append(
                f"checksum mismatch: {key}: local CRC32C "
                f"{gcs.crc32c_of_file(local_path)}, remote {obj.crc32c}"
            )
    problems.extend(f"only in {url}: {key}" for key in sorted(set(remote) - seen))
    return problems


# --------------------------------------------------------------------------- helpers


def default_state_dir() -> str:
    """Where resumable-upload session URLs wait for the next run."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dfd-storage")


def _run_parallel(
    function, items: Iterable[tuple], workers: int, on_file_done: Callable[[str], None] | None
) -> None:
    """Runs `function(*item)` on a thread pool; the first error cancels what has not started.

    Threads fit: the work is network and disk I/O, which releases the GIL.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    try:
        futures = [pool.submit(function, *item) for item in items]
        for future in concurrent.futures.as_completed(futures):
            relative = future.result()
            if on_file_done is not None:
                on_file_done(relative)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS
_WORKERS = flags.DEFINE_integer("workers", 8, "Files transferred at once.", lower_bound=1)
_CHUNK_MIB = flags.DEFINE_float(
    "chunk_mib", 32, "MiB per request of a resumable upload (rounded to 256 KiB)."
)
_RESUMABLE_THRESHOLD_MIB = flags.DEFINE_float(
    "resumable_threshold_mib",
    64,
    "Files at least this big go up through a resumable session that a rerun continues.",
)
_STATE_DIR = flags.DEFINE_string(
    "state_dir",
    None,
    "Folder keeping resumable-upload session URLs between runs "
    "(default: $XDG_CACHE_HOME/dfd-storage or ~/.cache/dfd-storage).",
)
_RETRY_DEADLINE_S = flags.DEFINE_float(
    "retry_deadline_s", 300, "Seconds one request is retried on transient errors."
)
_PROJECT = flags.DEFINE_string(
    "project", None, "Google Cloud project for the client (default: from the environment)."
)

_COMMANDS = {"upload": 2, "download": 2, "verify": 2, "check-writable": 1}


def main(argv):
    if len(argv) < 2 or argv[1] not in _COMMANDS:
        raise app.UsageError(
            f"Expected a command, one of {', '.join(_COMMANDS)}; got {argv[1:]!r}. "
            "Example: dfd-storage upload ./real_vs_fake gs://BUCKET/raw"
        )
    command, args = argv[1], argv[2:]
    if len(args) != _COMMANDS[command]:
        raise app.UsageError(
            f"`{command}` takes {_COMMANDS[command]} paths, got {len(args)}: {args!r}."
        )
    chunk_size = max(
        CHUNK_ALIGNMENT, round(_CHUNK_MIB.value * MIB / CHUNK_ALIGNMENT) * CHUNK_ALIGNMENT
    )
    try:
        if command == "check-writable":
            if gcs.is_gcs(args[0]):
                gcs.ensure_writable(args[0], client=gcs.make_client(_PROJECT.value))
            else:
                # Local folders go through tf.io.gfile; TensorFlow loads only here.
                from preprocessing import paths  # pylint: disable=import-outside-toplevel

                paths.ensure_writable(args[0])
            print(json.dumps({"writable": args[0]}))
            return 0
        client = gcs.make_client(_PROJECT.value)
        if command == "upload":
            stats = upload(
                args[0],
                args[1],
                client=client,
                workers=_WORKERS.value,
                chunk_size=chunk_size,
                resumable_threshold=int(_RESUMABLE_THRESHOLD_MIB.value * MIB),
                state_dir=_STATE_DIR.value,
                retry_deadline_s=_RETRY_DEADLINE_S.value,
            )
            print(json.dumps(stats.summary()))
        elif command == "download":
            stats = download(
                args[0],
                args[1],
                client=client,
                workers=_WORKERS.value,
                retry_deadline_s=_RETRY_DEADLINE_S.value,
            )
            print(json.dumps(stats.summary()))
        else:
            problems = verify(args[0], args[1], client=client)
            for line in problems:
                print(line)
            if problems:
                logging.error("%d problem(s) between %s and %s.", len(problems), *args)
                return 1
            logging.info("%s and %s hold the same bytes.", *args)
    except KeyboardInterrupt:
        logging.warning(
            "Interrupted. Rerun the same command: it skips what already arrived "
            "and continues big files from their last chunk."
        )
        return 130
    except (PermissionError, FileNotFoundError, ValueError, ChecksumMismatchError) as error:
        logging.error("%s", error)
        return 1
    except auth_exceptions.DefaultCredentialsError as error:
        logging.error(
            "No Google credentials (%s). Fix: run `gcloud auth application-default "
            "login`, or run on a VM or job with a service account.",
            error,
        )
        return 1
    except (api_exceptions.GoogleAPIError, requests.exceptions.RequestException) as error:
        logging.error(
            "Cloud Storage refused the request: %s. Fix: check the gs:// path and "
            "that your credentials may read/write it (`dfd-storage check-writable "
            "gs://...`).",
            error,
        )
        return 1
    return 0


def run_main():
    cli.run(main, module=sys.modules[__name__], prog="dfd-storage")


if __name__ == "__main__":
    run_main()
