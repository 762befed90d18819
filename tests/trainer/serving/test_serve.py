"""dfd-serve over real HTTP: a real server process, the tiny export, the real MTCNN; no mocks.

One server for the session (conftest.py); a second one, with tight limits and
`--model_url` pointing at the first, for what needs other flags.
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import threading
import time

import numpy as np
from PIL import Image
import pytest
import requests

from preprocessing import demo_media
from tests.trainer import tiny_detector
from trainer.inference import media, predict_lib, scoring

PREDICT = "/v1/models/deepfake:predict"


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def _upload(url: str, content: bytes, name: str = "x.jpg", kind: str = "image/jpeg", **kw):
    return requests.post(
        f"{url}/v1/analyze", files={"file": (name, content, kind)}, timeout=120, **kw
    )


def _rounded(value, digits: int = 6):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    return value


@pytest.fixture(scope="module")
def crops():
    return [tiny_detector.jpeg_bytes(b, seed=b) for b in (20, 90, 160, 230)]


def test_start_up_line_health_status_and_metadata(server):
    assert server.start_line.startswith("dfd-serve: serving deepfake from ")
    assert requests.get(f"{server.url}/healthz").json() == {"status": "alive"}
    assert requests.get(f"{server.url}/readyz").json()["ready"] is True
    status = requests.get(f"{server.url}/v1/models/deepfake").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    signature = requests.get(f"{server.url}/v1/models/deepfake/metadata").json()["metadata"]
    serving = signature["signature_def"]["signature_def"]["serving_default"]
    assert serving["inputs"]["images"]["dtype"] == "DT_STRING"
    assert serving["outputs"]["p_fake"]["dtype"] == "DT_FLOAT"
    missing = requests.get(f"{server.url}/v1/models/other")
    assert missing.status_code == 404 and "Servable not found" in missing.json()["error"]


def test_predict_gives_the_savedmodels_numbers_in_both_formats(server, export_dir, crops):
    expected = scoring.Detector(export_dir).score(crops).tolist()
    rows = requests.post(f"{server.url}{PREDICT}", json={"instances": [_b64(c) for c in crops]})
    assert rows.status_code == 200
    assert rows.json()["predictions"] == pytest.approx(expected, abs=1e-6)
    named = {"instances": [{"images": _b64(c)} for c in crops], "signature_name": "serving_default"}
    assert requests.post(f"{server.url}{PREDICT}", json=named).json()["predictions"] == (
        pytest.approx(expected, abs=1e-6)
    )
    columns = requests.post(
        f"{server.url}{PREDICT}", json={"inputs": {"images": [_b64(c) for c in crops]}}
    )
    assert columns.json()["outputs"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "body, message",
    [
        ({"instances": [_b64(b"not a jpeg")]}, "could not decode"),
        ({"instances": [{"b64": "%%%"}]}, "Unable to base64 decode"),
        ({"instances": ["plain string"]}, "b64"),
        ({"signature_name": "other", "instances": []}, "not found in signature def"),
        ({"nothing": 1}, "Missing 'inputs' or 'instances'"),
    ],
)
def test_predict_errors_are_tf_servings(server, body, message):
    answer = requests.post(f"{server.url}{PREDICT}", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_analyze_photo_is_the_dfd_predict_record(server, export_dir, demo_files, tmp_path):
    with open(demo_files["photo"], "rb") as f:
        answer = _upload(server.url, f.read(), "../../etc/group photo.jpg")
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["path"] == "group photo.jpg"  # A label only, never a path.
    links = served.pop("links")
    assert served.pop("threshold") == 0.5 and served.pop("links_expire_seconds") == 60
    output = tmp_path / "x.jsonl"
    predict_lib.run(
        export_dir,
        [demo_files["photo"]],
        output=str(output),
        options=media.MediaOptions(max_frames=3, max_frame_pixels=1_000_000),
    )
    expected = json.loads(output.read_text().splitlines()[0])
    for record in (served, expected):
        record.pop("path")
    assert _rounded(served) == _rounded(expected)
    assert len(served["faces"]) == 3 and served["kind"] == "photo"
    picture = requests.get(f"{server.url}{links['annotated.png']}")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    gone = requests.get(f"{server.url}/v1/media/nosuchtoken/annotated.png")
    assert gone.status_code == 404 and "expire" in gone.json()["error"]


def test_grad_cam_on_request_when_model_keras_is_beside_the_export(server, crops):
    assert requests.get(f"{server.url}/v1/detector").json()["explain_available"] is True
    plain = _upload(server.url, crops[1]).json()
    assert plain["kind"] == "crop" and plain["links"] == {}
    explained = _upload(server.url, crops[1], data={"explain": "1"}).json()
    (name,) = explained["links"]
    assert name.endswith(".gradcam.png")
    picture = requests.get(f"{server.url}{explained['links'][name]}")
    assert picture.content.startswith(b"\x89PNG")


def test_analyze_video_over_the_duration_cap_is_scored_on_the_cap(server, demo_files):
    with open(demo_files["video"], "rb") as f:
        answer = _upload(server.url, f.read(), "walk.mp4", "video/mp4")
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["kind"] == "video" and record["status"] == "ok"
    assert record["face_detector"] == "retinaface"  # As dfd-predict's video records say.
    capped = record["capped"]
    assert capped["max_video_seconds"] == 1.5 and "first 1.5 s" in capped["note"]
    assert (
        record["frames_sampled"] == 3
        and max(frame["time"] for track in record["tracks"] for frame in track["frames"]) < 1.5
    )
    timeline = requests.get(f"{server.url}{record['links']['timeline.png']}")
    assert timeline.content.startswith(b"\x89PNG")


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_bad_uploads_get_a_clear_status_and_reason(server, demo_files, tmp_path):
    with open(demo_files["photo"], "rb") as f:
        photo = f.read()
    cases = [
        (_upload(server.url, b"%PDF-1.4 whatever"), 415, "found a PDF document"),
        (_upload(server.url, b"hello\n", "a.txt", "text/plain"), 415, "found plain text"),
        (_upload(server.url, photo, "a.mp4", "video/mp4"), 400, "says it is video/mp4"),
        (_upload(server.url, b""), 400, "empty"),
        (_upload(server.url, _png(1200, 1000), "big.png", "image/png"), 400, "huge frame"),
        (requests.post(f"{server.url}/v1/analyze", data=photo), 415, "multipart/form-data"),
        (
            requests.post(f"{server.url}/v1/analyze", files={"other": ("a.jpg", photo)}),
            400,
            "no field 'file'",
        ),
    ]
    for answer, status, message in cases:
        assert answer.status_code == status, answer.text
        assert message in answer.json()["error"], answer.text
    # A truncated JPEG: the reason dfd-predict gives for the same bytes.
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(photo[: len(photo) // 3])
    answer = _upload(server.url, truncated.read_bytes())
    expected = predict_lib.run(server_export(server), [str(truncated)])["results"][0]
    assert answer.status_code == 400
    assert (answer.json()["status"], answer.json()["error"]) == (expected.status, expected.error)


def server_export(server) -> str:
    return server.start_line.split(" from ")[1].split(" at ")[0]


def test_uploads_over_the_limit_get_413_before_being_read_whole(server):
    big = b"\xff\xd8\xff" + bytes(4_000_000)
    answer = _upload(server.url, big)
    assert answer.status_code == 413 and "--max_upload_bytes" in answer.json()["error"]

    def chunks():  # No Content-Length: the byte counter must stop it.
        yield b"--b\r\nContent-Disposition: form-data; name=file; filename=a.jpg\r\n\r\n"
        for _ in range(40):
            yield bytes(100_000)

    streamed = requests.post(
        f"{server.url}/v1/analyze",
        data=chunks(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413
    metrics = requests.get(f"{server.url}/metrics").text
    assert 'dfd_rejects_total{reason="too_large"}' in metrics


def test_bounded_load_only_200_or_503_and_alive_after(server, crops):
    def client(index):
        codes = []
        with requests.Session() as session:
            for request in range(25):
                body = {"instances": [_b64(crops[(index + request) % len(crops)])]}
                answer = session.post(f"{server.url}{PREDICT}", json=body, timeout=60)
                if answer.status_code == 503:
                    assert answer.headers["Retry-After"]
                codes.append(answer.status_code)
        return codes

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = [code for codes in pool.map(client, range(16)) for code in codes]
    assert len(codes) == 400 and set(codes) <= {200, 503}
    assert requests.get(f"{server.url}/healthz").ok
    metrics = requests.get(f"{server.url}/metrics").text
    assert 'dfd_requests_total{code="200",endpoint="predict"}' in metrics
    assert "dfd_model_batch_size_bucket" in metrics


def test_remote_model_gives_the_same_numbers(remote, server, crops, demo_files):
    assert requests.get(f"{remote.url}/readyz").json()["ready"] is True
    local = requests.post(f"{server.url}{PREDICT}", json={"instances": [_b64(c) for c in crops]})
    far = requests.post(f"{remote.url}{PREDICT}", json={"instances": [_b64(c) for c in crops]})
    assert far.json() == local.json()
    bad = requests.post(f"{remote.url}{PREDICT}", json={"instances": [_b64(b"nope")]})
    assert bad.status_code == 400 and "could not decode" in bad.json()["error"]
    crop = crops[2]
    near, away = _upload(server.url, crop).json(), _upload(remote.url, crop).json()
    for record in (near, away):
        record.pop("links"), record.pop("links_expire_seconds")
    # Each server records the detector it runs (the remote one: MTCNN); the rest is equal.
    assert (near.pop("face_detector"), away.pop("face_detector")) == ("retinaface", "mtcnn")
    assert near == away and near["kind"] == "crop"


def test_busy_gets_503_retry_after_and_slow_gets_504(remote, tmp_path):
    clip = demo_media.write_video(
        str(tmp_path / "long.mp4"), demo_media.moving_faces_frames(120, 480, 270), rate=8
    )
    with open(clip, "rb") as f:
        video = f.read()
    slow = {}
    worker = threading.Thread(
        target=lambda: slow.update(answer=_upload(remote.url, video, "long.mp4", "video/mp4"))
    )
    worker.start()
    time.sleep(0.5)
    busy = _upload(remote.url, tiny_detector.jpeg_bytes(100))
    worker.join()
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "3", busy.text
    assert "--max_concurrent_analyses" in busy.json()["error"]
    answer = slow["answer"]
    assert answer.status_code == 504 and "--request_timeout_seconds" in answer.json()["error"]
    # The abandoned analysis stops at its next chunk; then the service takes work again.
    deadline = time.monotonic() + 60
    while (code := _upload(remote.url, tiny_detector.jpeg_bytes(100)).status_code) == 503:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert code == 200
    log = remote.stdout() + remote.stderr()
    assert "POST /v1/analyze" in log and "Traceback" not in log


def test_sigterm_lets_the_request_in_flight_finish(remote, demo_files):
    with open(demo_files["photo"], "rb") as f:
        photo = f.read()
    result = {}
    worker = threading.Thread(target=lambda: result.update(answer=_upload(remote.url, photo)))
    worker.start()
    time.sleep(0.3)
    assert remote.stop() == 0
    worker.join()
    assert result["answer"].status_code == 200
    assert os.path.exists(remote.stderr_path) and "Finished server process" in remote.stderr()
