r"""dfd-storage: stage datasets and artifacts on Google Cloud Storage.

Usage:
    dfd-storage upload LOCAL_FOLDER_OR_FILE gs://BUCKET/PREFIX   # e.g. the Kaggle zip
    dfd-storage download gs://BUCKET/PREFIX LOCAL_FOLDER          # e.g. a model_dir/export
    dfd-storage verify LOCAL_FOLDER_OR_FILE gs://BUCKET/PREFIX    # compare CRC32C checksums
    dfd-storage check-writable gs://BUCKET/PREFIX                 # fail fast before a long job

The transfers are google-cloud-storage's own: `transfer_manager` moves --workers
files at once on a thread pool; each file goes up in one request up to 8 MiB and
through a resumable upload in --chunk_mib chunks above that; transient errors
(429, 5xx, dropped connections) and failed chunks are retried with exponential
backoff; every upload and download is checked against its CRC32C (the server
checks what a one-request upload declares; the library compares the others and
raises on a mismatch).

What this command adds to the library: a rerun skips every file whose size and
CRC32C already match the other side, so an interrupted upload of 140k images
sends only what is missing or different; downloads land under a temporary name
and are renamed only when complete and checked; `verify` lists every difference;
`check-writable` probes a bucket before a long job; errors are one line each.
A file that was being sent when the run stopped is sent again from its first
byte (the library keeps a resumable session only within one run); for a single
multi-GB file over a flaky link, `gcloud storage cp` resumes across runs.

Runtime: bound by the network uplink (not measured here); --workers sets how many
files move at once.

Credentials: Application Default Credentials; nothing is read from files in this repo.
Prints a one-line JSON summary (or, for verify, one line per problem) on stdout.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import sys
import tempfile

from absl import app, flags, logging

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
    bytes_transferred: int = 0

    def summary(self) -> dict:
        return {
            "transferred": len(self.transferred),
            "skipped": len(self.skipped),
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
            if os.path.isfile(path):  # Regular files only: a named pipe would block the read.
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


def _checksums(paths_: list[str], workers: int) -> list[str]:
    """CRC32C of each local file, `workers` at a time (disk-bound, releases the GIL)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(gcs.crc32c_of_file, paths_))


def _first_error(errors: list[tuple[str, BaseException]], what: str) -> None:
    """Raises the first transfer error, turning a library checksum error into ours."""
    from google.cloud.storage import exceptions as storage_exceptions  # pylint: disable=import-outside-toplevel

    if not errors:
        return
    name, error = errors[0]
    more = f" ({len(errors) - 1} more file(s) failed too)" if len(errors) > 1 else ""
    if isinstance(error, (storage_exceptions.DataCorruption, ChecksumMismatchError)):
        raise ChecksumMismatchError(
            f"{what} {name}: the bytes received do not match their CRC32C ({error}){more}. "
            "Fix: rerun the command; it transfers that file again."
        ) from error
    if more:
        logging.error("%d files failed; the first: %s: %s", len(errors), name, error)
    raise error


# --------------------------------------------------------------------------- upload


def upload(
    src: str,
    dst_url: str,
    *,
    client=None,
    workers: int = 8,
    chunk_size: int = 32 * MIB,
    retry_deadline_s: float = 300.0,
) -> TransferStats:
    """Uploads a local folder or file under `dst_url`, sending only what is not there yet.

    Args:
        src: a local folder (uploaded recursively) or one file (e.g. the Kaggle zip).
        dst_url: gs://BUCKET[/PREFIX]; files land at PREFIX/<path relative to src>.
        client: a google.cloud.storage.Client; one on ADC by default.
        workers: files transferred at once.
        chunk_size: bytes per request of a resumable upload (a multiple of 256 KiB).
        retry_deadline_s: how long one request is retried on transient errors.

    Returns:
        TransferStats.

    Raises:
        ValueError, FileNotFoundError: naming the bad argument.
        ChecksumMismatchError: when Cloud Storage reports other bytes than were sent.
    """
    from google.cloud.storage import transfer_manager  # pylint: disable=import-outside-toplevel

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
    remote = list_remote(client, dst_url, retry)
    bucket = client.bucket(bucket_name)
    stats = TransferStats()
    crcs = _checksums([path for path, _ in files], workers)
    todo = _plan_uploads(files, crcs, remote, bucket, prefix, chunk_size, stats)
    results = transfer_manager.upload_many(
        [(local_path, blob) for local_path, _, _, blob in todo],
        upload_kwargs={"checksum": "crc32c", "retry": retry},
        worker_type=transfer_manager.THREAD,
        max_workers=workers,
        raise_exception=False,
    )
    errors = _count_uploads(todo, results, bucket_name, stats)
    logging.info("Upload %s -> %s: %s", src, dst_url, stats.summary())
    _first_error(errors, "Uploading")
    return stats


def _plan_uploads(files, crcs, remote, bucket, prefix: str, chunk_size: int, stats):
    """(path, name, CRC32C, blob) per file to send; files already there go to `stats`."""
    todo = []
    for (local_path, relative), crc in zip(files, crcs):
        if _same_content(local_path, remote.get(relative.replace(os.sep, "/")), crc):
            stats.skipped.append(relative)
        else:
            blob = bucket.blob(_object_name(prefix, relative), chunk_size=chunk_size)
            todo.append((local_path, relative, crc, blob))
    return todo


def _count_uploads(todo, results, bucket_name: str, stats: TransferStats):
    """Adds each upload that arrived intact to `stats`; returns [(name, error)] of the others.

    An upload arrived intact when the object's CRC32C, as Cloud Storage reports it
    after the upload, is the local file's.
    """
    errors = []
    for (local_path, relative, crc, blob), result in zip(todo, results):
        if isinstance(result, BaseException):
            errors.append((relative, result))
        elif blob.crc32c != crc:
            errors.append(
                (
                    relative,
                    ChecksumMismatchError(
                        f"gs://{bucket_name}/{blob.name} has CRC32C {blob.crc32c}, "
                        f"{local_path} has {crc}"
                    ),
                )
            )
        else:
            stats.transferred.append(relative)
            stats.bytes_transferred += os.path.getsize(local_path)
    return errors


# --------------------------------------------------------------------------- download


def download(
    src_url: str,
    dst: str,
    *,
    client=None,
    workers: int = 8,
    retry_deadline_s: float = 300.0,
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
    from google.cloud.storage import transfer_manager  # pylint: disable=import-outside-toplevel

    client = client or gcs.make_client()
    retry = gcs.make_retry(retry_deadline_s)
    remote = list_remote(client, src_url, retry)
    if not remote:
        raise FileNotFoundError(
            f"No objects under {src_url}: check the path (`gcloud storage ls {src_url}`)."
        )
    bucket = client.bucket(gcs.parse_url(src_url)[0])
    stats = TransferStats()
    todo = _plan_downloads(remote, bucket, dst, stats)
    try:
        results = transfer_manager.download_many(
            [(bucket.blob(obj.name), partial) for obj, _, _, partial in todo],
            download_kwargs={"checksum": "crc32c", "retry": retry},
            worker_type=transfer_manager.THREAD,
            max_workers=workers,
            raise_exception=False,
        )
        errors = _install_downloads(todo, results, bucket, stats)
    finally:
        for _, _, _, partial in todo:
            if os.path.exists(partial):
                os.remove(partial)
    logging.info("Download %s -> %s: %s", src_url, dst, stats.summary())
    _first_error(errors, "Downloading")
    return stats


def _plan_downloads(remote: dict[str, RemoteObject], bucket, dst: str, stats: TransferStats):
    """(object, name, target, temporary file) per object to fetch; the others go to `stats`.

    Raises:
        ValueError: an object name would escape `dst`.
    """
    root = os.path.abspath(dst)
    todo = []
    for relative, obj in sorted(remote.items()):
        target = os.path.abspath(os.path.join(root, relative))
        if os.path.commonpath([root, target]) != root:
            raise ValueError(
                f"Object gs://{bucket.name}/{obj.name} would be written outside "
                f"{dst}; refusing to download it."
            )
        if os.path.isfile(target) and _same_content(target, obj):
            stats.skipped.append(relative)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".partial-", dir=os.path.dirname(target))
        os.close(fd)
        todo.append((obj, relative, target, partial))
    return todo


def _install_downloads(todo, results, bucket, stats: TransferStats):
    """Renames each intact download into place; returns [(name, error)] of the others."""
    errors = []
    for (obj, relative, target, partial), result in zip(todo, results):
        if isinstance(result, BaseException):
            errors.append((relative, result))
            continue
        received = gcs.crc32c_of_file(partial)
        if obj.crc32c and received != obj.crc32c:
            errors.append(
                (
                    relative,
                    ChecksumMismatchError(
                        f"gs://{bucket.name}/{obj.name} arrived with CRC32C {received}, "
                        f"Cloud Storage reports {obj.crc32c}"
                    ),
                )
            )
            continue
        os.replace(partial, target)
        stats.transferred.append(relative)
        stats.bytes_transferred += obj.size
    return errors


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


# --------------------------------------------------------------------------- command line

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command's flags; called by `run_main`, so importing this module as a
    library (tests, other tools) defines none and cannot collide with other commands."""
    flags.DEFINE_integer("workers", 8, "Files transferred at once.", lower_bound=1)
    flags.DEFINE_float(
        "chunk_mib",
        32,
        "MiB per request of the resumable uploads of files over 8 MiB (rounded to 256 KiB).",
    )
    flags.DEFINE_float(
        "retry_deadline_s", 300, "Seconds one request is retried on transient errors."
    )
    flags.DEFINE_string(
        "project", None, "Google Cloud project for the client (default: from the environment)."
    )


# command -> which of its arguments must be gs:// URLs.
_COMMANDS = {"upload": (1,), "download": (0,), "verify": (1,), "check-writable": ()}
_ARITY = {"upload": 2, "download": 2, "verify": 2, "check-writable": 1}


def _check_arguments(command: str, args: list[str]) -> None:
    """URLs first: a mistyped gs:// path must not surface as a credential problem."""
    for index in _COMMANDS[command]:
        if not gcs.is_gcs(args[index]):
            raise cli.UserError(
                f"`{command}` expects a gs://BUCKET[/PREFIX] URL as argument {index + 1}, got "
                f"{args[index]!r}."
            )
    for arg in args:
        if gcs.is_gcs(arg):
            gcs.parse_url(arg)  # ValueError naming the bad bucket name.
        elif arg.lower().startswith(("gs:", "gcs:")):
            raise cli.UserError(f"{arg} is not a valid Cloud Storage URL: write gs://BUCKET/PATH.")


def _run_command(command: str, args: list[str]) -> int:
    chunk_size = max(
        CHUNK_ALIGNMENT, round(FLAGS.chunk_mib * MIB / CHUNK_ALIGNMENT) * CHUNK_ALIGNMENT
    )
    if command == "check-writable":
        if gcs.is_gcs(args[0]):
            gcs.ensure_writable(args[0], client=gcs.make_client(FLAGS.project))
        else:
            # Local folders go through tf.io.gfile; TensorFlow loads only here, quietly.
            from preprocessing import paths, tf_startup  # pylint: disable=import-outside-toplevel

            tf_startup.import_tensorflow()
            paths.ensure_writable(args[0])
        print(json.dumps({"writable": args[0]}))
        return 0
    client = gcs.make_client(FLAGS.project)
    if command == "upload":
        stats = upload(
            args[0],
            args[1],
            client=client,
            workers=FLAGS.workers,
            chunk_size=chunk_size,
            retry_deadline_s=FLAGS.retry_deadline_s,
        )
        print(json.dumps(stats.summary()))
    elif command == "download":
        stats = download(
            args[0],
            args[1],
            client=client,
            workers=FLAGS.workers,
            retry_deadline_s=FLAGS.retry_deadline_s,
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
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] not in _COMMANDS:
        raise app.UsageError(
            f"Expected a command, one of {', '.join(_COMMANDS)}; got {argv[1:]!r}. "
            "Example: dfd-storage upload ./real_vs_fake gs://BUCKET/raw"
        )
    command, args = argv[1], argv[2:]
    if len(args) != _ARITY[command]:
        raise app.UsageError(
            f"`{command}` takes {_ARITY[command]} paths, got {len(args)}: {args!r}."
        )
    _check_arguments(command, args)
    # pylint: disable=import-outside-toplevel
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    import requests

    try:
        return _run_command(command, args)
    except KeyboardInterrupt:
        logging.warning("Interrupted. Rerun the same command: it skips what already arrived.")
        return 130
    except auth_exceptions.DefaultCredentialsError as error:
        raise cli.UserError(
            f"No Google credentials ({cli.one_line(error)}). Fix: run `gcloud auth "
            "application-default login`, or run on a VM or job with a service account."
        ) from error
    except (api_exceptions.GoogleAPIError, requests.exceptions.RequestException) as error:
        raise cli.UserError(
            f"Cloud Storage refused the request: {cli.one_line(error)}. Fix: check the gs:// "
            "path and that your credentials may read/write it (`dfd-storage check-writable "
            "gs://...`)."
        ) from error


def run_main():
    define_flags()
    cli.run(
        main,
        module=sys.modules[__name__],
        prog="dfd-storage",
        extra_user_errors=(ChecksumMismatchError,),
    )


if __name__ == "__main__":
    run_main()
