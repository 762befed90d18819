"""dfd-storage and the gs:// writability check against a real GCS emulator on 127.0.0.1."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from deploy import storage
from preprocessing import gcs, paths
from tests.deploy import conftest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KIB = 1 << 10


class Interrupted(Exception):
    """Stands for Ctrl-C or a lost connection in the middle of a transfer."""


def make_tree(root, files=8, size=3 * KIB):
    """A small Kaggle-like tree: <split>/<label>/<n>.jpg of random bytes."""
    for i in range(files):
        folder = os.path.join(root, ("train", "test")[i % 2], ("real", "fake")[i % 3 % 2])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
            f.write(os.urandom(size + i))
    return sorted(
        os.path.relpath(os.path.join(d, n), root) for d, _, names in os.walk(root) for n in names
    )


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_upload_sends_everything_once_and_a_rerun_skips_it(tmp_path, gcs_client, bucket):
    names = make_tree(tmp_path / "src")
    first = storage.upload(
        str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client, workers=4
    )
    assert sorted(first.transferred) == names and not first.skipped

    remote = storage.list_remote(gcs_client, f"gs://{bucket}/raw")
    assert sorted(remote) == names
    for name in names:
        assert remote[name].crc32c == gcs.crc32c_of_file(str(tmp_path / "src" / name))
        assert remote[name].name == f"raw/{name}"

    again = storage.upload(
        str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client, workers=4
    )
    assert not again.transferred and sorted(again.skipped) == names
    assert again.bytes_transferred == 0


def test_a_partial_upload_is_completed_by_a_rerun(tmp_path, gcs_client, bucket):
    names = make_tree(tmp_path / "src", files=10)
    for name in names[:3]:  # What an interrupted run had sent.
        gcs_client.bucket(bucket).blob(f"raw/{name}").upload_from_filename(
            str(tmp_path / "src" / name)
        )
    rerun = storage.upload(
        str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client, workers=2
    )
    assert sorted(rerun.skipped) == names[:3]
    assert sorted(rerun.transferred) == names[3:]
    assert storage.verify(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client) == []


def test_big_files_go_up_in_resumable_chunks_with_their_checksum(
    tmp_path, gcs_client, bucket, slow_proxy, monkeypatch
):
    """Over 8 MiB the library switches to a resumable upload, one request per chunk."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{slow_proxy.port}")
    client = gcs.make_client(conftest.PROJECT)
    payload = os.urandom(9 * 1024 * KIB + 123)
    (tmp_path / "archive.zip").write_bytes(payload)
    stats = storage.upload(
        str(tmp_path / "archive.zip"), f"gs://{bucket}/raw", client=client, chunk_size=4096 * KIB
    )
    assert stats.transferred == ["archive.zip"] and stats.bytes_transferred == len(payload)
    assert slow_proxy.count(b"POST /upload/storage/v1/b/") == 1  # One resumable session...
    assert slow_proxy.count(b"PUT /upload/storage/v1/b/") == 3  # ...sent in 3 chunks.
    # The emulator computed this CRC32C from the bytes it stored (a 9 MiB read-back takes 10 s).
    blob = gcs_client.bucket(bucket).get_blob("raw/archive.zip")
    assert (blob.size, blob.crc32c) == (len(payload), gcs.crc32c_of_bytes(payload))


def test_a_sources_listing_on_gcs_has_sizes_and_checksums(tmp_path, gcs_client, bucket):
    names = make_tree(tmp_path / "src", files=4)
    storage.upload(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client)
    listed = gcs.list_folder(f"gs://{bucket}/raw/train/real", client=gcs_client)
    expected = {n.split("/")[-1] for n in names if n.startswith("train/real/")}
    assert set(listed) == expected
    for name, (size, crc) in listed.items():
        local = tmp_path / "src" / "train" / "real" / name
        assert (size, crc) == (local.stat().st_size, gcs.crc32c_of_file(str(local)))


def test_download_round_trip_and_resume(tmp_path, gcs_client, bucket):
    names = make_tree(tmp_path / "src")
    storage.upload(str(tmp_path / "src"), f"gs://{bucket}/run/export", client=gcs_client)

    first = storage.download(
        f"gs://{bucket}/run/export", str(tmp_path / "dst"), client=gcs_client, workers=3
    )
    assert sorted(first.transferred) == names
    for name in names:
        assert read(tmp_path / "dst" / name) == read(tmp_path / "src" / name)
    assert not [n for n in os.listdir(tmp_path / "dst" / "train") if n.startswith(".partial")]

    os.remove(tmp_path / "dst" / names[0])  # an interrupted download left this one out
    again = storage.download(f"gs://{bucket}/run/export", str(tmp_path / "dst"), client=gcs_client)
    assert again.transferred == [names[0]]
    assert sorted(again.skipped) == names[1:]

    one = storage.download(
        f"gs://{bucket}/run/export/{names[1]}", str(tmp_path / "one"), client=gcs_client
    )
    assert one.transferred == [os.path.basename(names[1])]


def test_download_of_a_missing_prefix_names_it(tmp_path, gcs_client, bucket):
    with pytest.raises(FileNotFoundError, match=f"gs://{bucket}/nothing"):
        storage.download(f"gs://{bucket}/nothing", str(tmp_path), client=gcs_client)


def test_checksum_mismatches_are_detected(tmp_path, gcs_client, bucket):
    names = make_tree(tmp_path / "src", files=4)
    storage.upload(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client)

    # Same size, other bytes: only the checksum can tell.
    changed = tmp_path / "src" / names[1]
    data = bytearray(read(changed))
    data[10] ^= 0xFF
    changed.write_bytes(bytes(data))
    problems = storage.verify(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client)
    assert len(problems) == 1 and problems[0].startswith(f"checksum mismatch: {names[1]}")

    # ... and an upload sends that file again, and only that one.
    rerun = storage.upload(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client)
    assert rerun.transferred == [names[1]]

    # An object whose bytes no longer match the CRC32C recorded for it (corruption at
    # rest or in transit) fails the download, and nothing is left under its name.
    blob = gcs_client.bucket(bucket).get_blob(f"raw/{names[2]}")
    blob.crc32c = gcs.crc32c_of_bytes(b"other bytes")
    blob.patch()
    with pytest.raises(storage.ChecksumMismatchError, match=names[2]):
        storage.download(f"gs://{bucket}/raw", str(tmp_path / "dst"), client=gcs_client, workers=1)
    assert not (tmp_path / "dst" / names[2]).exists()


def test_writability_check_reports_what_is_wrong(gcs_client, bucket):
    paths.ensure_writable(f"gs://{bucket}/runs/a")  # the check the trainer and build call
    assert storage.list_remote(gcs_client, f"gs://{bucket}") == {}  # the probe is gone

    with pytest.raises(PermissionError, match="gs://no-such-bucket-dfd does not exist"):
        paths.ensure_writable("gs://no-such-bucket-dfd/runs/a")
    with pytest.raises(ValueError, match="gs://BUCKET"):
        gcs.parse_url("gs:///runs")
    # A bad URL is named as such, before any client (or missing credential) is involved.
    with pytest.raises(ValueError, match="'My_Bucket' .* is not a valid bucket name"):
        paths.ensure_writable("gs://My_Bucket/runs")
    with pytest.raises(ValueError, match="gs:/my-bucket/runs is not a valid Cloud Storage URL"):
        paths.ensure_writable("gs:/my-bucket/runs")


def test_transient_connection_errors_are_retried_with_backoff(tmp_path, monkeypatch):
    """Cloud Storage unreachable at first (connection refused), back 1.5 s later."""
    port = conftest.free_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    names = make_tree(tmp_path / "src", files=2)
    servers = []
    timer = threading.Timer(
        1.5, lambda: servers.append(conftest.start_emulator(port, default_bucket="late"))
    )
    timer.start()
    try:
        start = time.monotonic()
        stats = storage.upload(
            str(tmp_path / "src"),
            "gs://late/raw",
            client=gcs.make_client(conftest.PROJECT),
            retry_deadline_s=30,
        )
        assert time.monotonic() - start >= 1.5  # it waited for the server instead of failing
        assert sorted(stats.transferred) == names
    finally:
        timer.join()
        for server in servers:
            server.stop()


def run_cli(*args, env_host, tmp_path):
    env = dict(
        os.environ,
        STORAGE_EMULATOR_HOST=env_host,
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        GOOGLE_CLOUD_PROJECT=conftest.PROJECT,
    )
    if not env_host:  # As on a machine with no emulator and no credentials.
        del env["STORAGE_EMULATOR_HOST"]
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # As a user's shell has it (conftest sets it).
    return subprocess.run(
        [sys.executable, "-m", "deploy.storage", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_command_line(tmp_path, emulator_host, gcs_client, bucket):
    names = make_tree(tmp_path / "src", files=3)
    up = run_cli(
        "upload",
        str(tmp_path / "src"),
        f"gs://{bucket}/raw",
        "--workers=2",
        env_host=emulator_host,
        tmp_path=tmp_path,
    )
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout) == {
        "transferred": 3,
        "skipped": 0,
        "bytes_transferred": sum(os.path.getsize(tmp_path / "src" / n) for n in names),
    }

    (tmp_path / "src" / names[0]).write_bytes(b"changed")
    check = run_cli(
        "verify",
        str(tmp_path / "src"),
        f"gs://{bucket}/raw",
        env_host=emulator_host,
        tmp_path=tmp_path,
    )
    assert check.returncode == 1
    assert check.stdout.splitlines() == [
        f"size mismatch: {names[0]}: local 7 bytes, remote "
        f"{gcs_client.bucket(bucket).get_blob('raw/' + names[0]).size} bytes"
    ]

    ok = run_cli("check-writable", f"gs://{bucket}/runs", env_host=emulator_host, tmp_path=tmp_path)
    assert ok.returncode == 0 and json.loads(ok.stdout) == {"writable": f"gs://{bucket}/runs"}
    bad = run_cli(
        "check-writable", "gs://no-such-bucket-dfd/runs", env_host=emulator_host, tmp_path=tmp_path
    )
    assert bad.returncode == 1 and "gs://no-such-bucket-dfd does not exist" in bad.stderr
    # A local folder goes through tf.io.gfile: TensorFlow loads, without its start-up notes.
    local = run_cli("check-writable", str(tmp_path / "out"), env_host=None, tmp_path=tmp_path)
    assert local.returncode == 0 and json.loads(local.stdout) == {"writable": str(tmp_path / "out")}
    assert "oneDNN" not in local.stderr and "InitializeLog" not in local.stderr, local.stderr

    usage = run_cli("uplod", "a", "b", env_host=emulator_host, tmp_path=tmp_path)
    assert usage.returncode != 0 and "upload, download, verify, check-writable" in usage.stderr

    # Mistyped URLs: one line that says so, not "No Google credentials", no traceback.
    for args, message in [
        (("download", "gs://My_Bucket/x", str(tmp_path / "d")), "not a valid bucket name"),
        (("upload", str(tmp_path / "src"), "gs:/my-bucket/raw"), "expects a gs://BUCKET"),
    ]:
        bad_url = run_cli(*args, env_host="", tmp_path=tmp_path)
        assert bad_url.returncode == 1, bad_url.stderr
        (line,) = bad_url.stderr.strip().splitlines()
        assert line.startswith("dfd-storage: error:") and message in line


def wait_for(condition, process, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the upload ended before {what}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def cli_env(host, tmp_path):
    return dict(
        os.environ,
        STORAGE_EMULATOR_HOST=host,
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        GOOGLE_CLOUD_PROJECT=conftest.PROJECT,
    )


def test_killed_upload_sends_only_the_rest_on_rerun(tmp_path, gcs_client, bucket, slow_proxy):
    """SIGKILL in the middle of a folder upload, over a slow link; then the same command."""
    names = make_tree(tmp_path / "src", files=12)
    argv = [
        sys.executable,
        "-m",
        "deploy.storage",
        "upload",
        str(tmp_path / "src"),
        f"gs://{bucket}/raw",
        "--workers=1",
    ]
    env = cli_env(f"http://127.0.0.1:{slow_proxy.port}", tmp_path)
    uploads = f"POST /upload/storage/v1/b/{bucket}/o?uploadType=multipart".encode()
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        # The 5th upload is sent only after the 4th was answered: 4 objects exist.
        wait_for(lambda: slow_proxy.count(uploads) >= 5, process, "the 5th file")
    finally:
        process.kill()
        process.wait()
    present = set(storage.list_remote(gcs_client, f"gs://{bucket}/raw"))
    assert 4 <= len(present) < len(names)

    rerun = subprocess.run(
        argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert (summary["skipped"], summary["transferred"]) == (len(present), len(names) - len(present))
    assert storage.verify(str(tmp_path / "src"), f"gs://{bucket}/raw", client=gcs_client) == []


@pytest.mark.parametrize("command", ["build", "train"])
def test_long_jobs_fail_in_seconds_on_an_unwritable_gs_output(command, tmp_path, emulator_host):
    """The dataset build and the trainer run the check before any real work."""
    if command == "build":
        argv = [
            "-m",
            "tfds_builder.build",
            "--manual_dir="
            + os.path.join(REPO, "tfds_builder", "real_and_fake_faces", "dummy_data"),
            "--data_dir=gs://no-such-bucket-dfd/tfds",
            "--running_mode=in_memory",
        ]
    else:
        (tmp_path / "data" / "real_and_fake_faces").mkdir(parents=True)
        argv = [
            "-m",
            "trainer.task",
            "--flagfile=" + os.path.join(REPO, "deploy", "configs", "demo_cpu.cfg"),
            f"--data_dir={tmp_path / 'data'}",
            "--model_dir=gs://no-such-bucket-dfd/runs/r1",
        ]
    env = dict(os.environ, STORAGE_EMULATOR_HOST=emulator_host, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode != 0
    assert "gs://no-such-bucket-dfd does not exist" in result.stderr, result.stderr[-3000:]
    assert time.monotonic() - start < 60
