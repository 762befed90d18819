"""Google Cloud Storage helpers shared by the dataset build, the trainer and `dfd-storage`.

Why google-cloud-storage and not `tf.io.gfile` here: this client honours
`STORAGE_EMULATOR_HOST`, so the same code is tested against a local GCS emulator; it
exposes each object's CRC32C, which the transfers compare to skip and verify files; and
it retries transient errors with exponential backoff. Everything else in the project
(TFDS, Keras) keeps using `tf.io.gfile`, which reads and writes `gs://` directly.

The import of google-cloud-storage stays inside the functions so that local-only runs
never pay for it.

Credentials: Application Default Credentials (`gcloud auth application-default login`
on a laptop, the service account on a VM or Vertex AI). Nothing here reads a key file.
"""

from __future__ import annotations

import base64
import re
import uuid

GCS_PREFIX = "gs://"

# Transient errors are retried with this backoff: 1 s, 2 s, 4 s, ... capped at 32 s.
RETRY_INITIAL_S = 1.0
RETRY_MULTIPLIER = 2.0
RETRY_MAXIMUM_S = 32.0
DEFAULT_RETRY_DEADLINE_S = 120.0


def is_gcs(path: str) -> bool:
    """Whether `path` is a `gs://` URL."""
    return path.startswith(GCS_PREFIX)


# Cloud Storage bucket names: 3-63 characters (up to 222 with dots), lowercase letters,
# digits, '-', '_' and '.', starting and ending with a letter or digit.
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def parse_url(url: str) -> tuple[str, str]:
    """Splits `gs://bucket/some/prefix/` into `("bucket", "some/prefix")`.

    Checked before any client is made, so that a mistyped URL is reported as such
    and not as a missing credential or a refused request.

    Raises:
        ValueError: naming the URL when it is not of the form gs://BUCKET[/PATH] or
            the bucket name breaks Cloud Storage's naming rules.
    """
    if not is_gcs(url):
        raise ValueError(f"Expected a gs://BUCKET[/PATH] URL, got {url!r}.")
    bucket, _, path = url[len(GCS_PREFIX) :].partition("/")
    if not bucket:
        raise ValueError(f"No bucket name in {url!r}; write it as gs://BUCKET[/PATH].")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket or (len(bucket) > 63 and "." not in bucket):
        raise ValueError(
            f"{bucket!r} in {url!r} is not a valid bucket name: use 3-63 lowercase letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit."
        )
    return bucket, path.strip("/")


def list_folder(url: str, *, client=None) -> dict[str, tuple[int, str]]:
    """The objects directly under the folder-like prefix `url`: name -> (size, CRC32C).

    One listing request per 1,000 objects, with sizes and checksums included:
    what a `tf.io.gfile.stat` per object would cost 140k requests for.
    """
    bucket_name, prefix = parse_url(url)
    client = client or make_client()
    prefix = f"{prefix}/" if prefix else ""
    found = {}
    blobs = client.list_blobs(bucket_name, prefix=prefix, delimiter="/", retry=make_retry())
    for blob in blobs:
        name = blob.name[len(prefix) :]
        if name and "/" not in name:
            found[name] = (int(blob.size), blob.crc32c or "")
    return found


def make_client(project: str | None = None):
    """A storage client on Application Default Credentials (or the emulator).

    With `STORAGE_EMULATOR_HOST` set, the library talks to that host anonymously,
    which is how the tests run.
    """
    from google.cloud import storage  # pylint: disable=import-outside-toplevel

    return storage.Client(project=project)


def make_retry(deadline_s: float = DEFAULT_RETRY_DEADLINE_S):
    """Exponential-backoff retry for transient errors (429, 5xx, dropped connections).

    Built on the library's own predicate, which knows which errors are transient;
    `deadline_s` bounds the total time spent retrying one call.
    """
    from google.cloud.storage.retry import DEFAULT_RETRY  # pylint: disable=import-outside-toplevel

    return DEFAULT_RETRY.with_delay(
        initial=RETRY_INITIAL_S, maximum=RETRY_MAXIMUM_S, multiplier=RETRY_MULTIPLIER
    ).with_timeout(deadline_s)


def crc32c_of_file(path: str, block_size: int = 8 << 20) -> str:
    """The CRC32C of a local file, base64-encoded as GCS reports it in `Blob.crc32c`."""
    import google_crc32c  # pylint: disable=import-outside-toplevel

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(block_size), b""):
            checksum.update(block)
    return base64.b64encode(checksum.digest()).decode("ascii")


def crc32c_of_bytes(data: bytes) -> str:
    """The CRC32C of `data`, base64-encoded as GCS reports it."""
    import google_crc32c  # pylint: disable=import-outside-toplevel

    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode("ascii")


def ensure_writable(url: str, *, client=None, deadline_s: float = 30.0) -> None:
    """Fails in seconds when objects cannot be created and deleted under `url`.

    Writes a small probe object below `url` and deletes it: the two permissions a
    trainer (checkpoints, backups) and a dataset build (shards) both need. Transient
    errors are retried for up to `deadline_s` seconds.

    Raises:
        ValueError: when `url` is not a gs:// URL.
        PermissionError: naming the URL, what failed and the likely fix.
    """
    # pylint: disable=import-outside-toplevel
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    import requests

    bucket_name, prefix = parse_url(url)
    probe_name = "/".join(p for p in (prefix, f".write_probe-{uuid.uuid4().hex}") if p)
    retry = make_retry(deadline_s)
    try:
        client = client or make_client()
        blob = client.bucket(bucket_name).blob(probe_name)
        blob.upload_from_string(b"ok", retry=retry)
        blob.delete(retry=retry)
    except api_exceptions.NotFound as error:
        raise PermissionError(
            f"Cannot write to {url}: bucket gs://{bucket_name} does not exist ({error}). "
            f"Fix: create it (gcloud storage buckets create gs://{bucket_name} "
            "--location=REGION) or correct the path."
        ) from error
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as error:
        raise PermissionError(
            f"Cannot write to {url}: access denied ({error}). Fix: give the account that "
            "runs this (your Application Default Credentials or the VM's service account) "
            f"roles/storage.objectAdmin on gs://{bucket_name}."
        ) from error
    except auth_exceptions.DefaultCredentialsError as error:
        raise PermissionError(
            f"Cannot write to {url}: no Google credentials found ({error}). Fix: run "
            "`gcloud auth application-default login`, or run on a VM or Vertex AI job "
            "with a service account."
        ) from error
    except (
        api_exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
        requests.exceptions.RequestException,
        ConnectionError,
    ) as error:
        raise PermissionError(
            f"Cannot write to {url}: {type(error).__name__}: {error}. Fix: check the "
            "network route to Cloud Storage (or STORAGE_EMULATOR_HOST when testing) and "
            "that the bucket accepts writes (no retention lock, not requester-pays)."
        ) from error
