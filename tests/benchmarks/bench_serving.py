"""Benchmark: dfd-serve's predict throughput and latency, with and without dynamic batching.

    .venv/bin/python tests/benchmarks/bench_serving.py --output_dir=bench_out/bench_serving \\
        --image_size=64 --seconds=8

One exported detector (ResNet50, weights=None, --image_size px, the real export
contract), measured in one run on this machine:

- the baseline: the SavedModel called directly in a loop, in this process, one
  image per call and --max_batch_size images per call (images/s); the batched rate is
  measured again just before each served row (the server idle), and that row's ratio
  uses it, since the load of a shared machine moves within minutes;
- a real `dfd-serve` process (`python -m trainer.serve`), once with dynamic
  batching (--batch_timeout_micros, default 0: take what is queued) and once
  with `--enable_batching=false`; 1, 8 and 32 concurrent clients (threads with
  a keep-alive session each) send `:predict` requests of one face crop for
  --seconds each: requests/s and p50/p99 latency. The clients share the
  machine with the server (2 cores here), as they do in any one-box test;
- `/v1/analyze` latency for the demo's group photo (640x360, three faces) and a
  1280x720 photo (two faces), --analyze_repeats sequential requests each (median, min-max).

Prints a Markdown table; writes results.json.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import requests  # noqa: E402

from preprocessing import demo_media  # noqa: E402
from preprocessing.media import faces  # noqa: E402
from tests.trainer.serving.server import ServerProcess  # noqa: E402
from trainer import export  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer.inference import media, scoring  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_serving"))
    parser.add_argument("--image_size", type=int, default=64, help="The detector's input side.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Timed seconds per setting.")
    parser.add_argument("--clients", default="1,8,32", help="Concurrent clients per setting.")
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--batch_timeout_micros", type=int, default=0)
    parser.add_argument("--analyze_repeats", type=int, default=5)
    return parser.parse_args(argv)


def make_crops(count: int, image_size: int) -> list[bytes]:
    """Aligned face crops of the astronaut at the detector's crop size, slightly varied."""
    astronaut = demo_media.astronaut()
    landmarks = faces.FaceDetector().detect(astronaut).faces[0].landmarks
    size = media.crop_size(image_size)
    return [
        media.encode_jpeg(faces.align(astronaut, landmarks, size, margin=1.0 + 0.01 * k))
        for k in range(count)
    ]


def direct_rate(detector: scoring.Detector, crops: list[bytes], batch: int, seconds: float):
    """Images/s of the SavedModel called in a loop with `batch` images per call."""
    detector.score(crops[:batch])  # Warm-up (tracing).
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        detector.score([crops[(done + k) % len(crops)] for k in range(batch)])
        done += batch
    return done / (time.perf_counter() - start)


def load(url: str, crops: list[bytes], clients: int, seconds: float) -> dict:
    """`clients` threads sending one-crop :predict requests; counts the requests that start
    and end inside a `seconds` window opened after a warm-up."""
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(c).decode()}]}) for c in crops]
    stop = threading.Event()

    def client(index: int) -> list[tuple[float, float, int]]:
        done = []
        with requests.Session() as session:
            k = index
            while not stop.is_set():
                start = time.perf_counter()
                answer = session.post(
                    f"{url}/v1/models/deepfake:predict",
                    data=bodies[k % len(bodies)],
                    headers={"Content-Type": "application/json"},
                    timeout=120,
                )
                done.append((start, time.perf_counter(), answer.status_code))
                k += clients
        return done

    warm_up = max(1.0, seconds / 4)
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, index) for index in range(clients)]
        time.sleep(warm_up)
        window_start = time.perf_counter()
        time.sleep(seconds)
        window_end = time.perf_counter()
        stop.set()
        requests_done = [r for future in futures for r in future.result()]
    inside = [r for r in requests_done if r[0] >= window_start and r[1] <= window_end]
    latencies = sorted(end - start for start, end, code in inside if code == 200)
    return {
        "clients": clients,
        "requests_per_s": len(latencies) / (window_end - window_start),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
        "not_200": sum(code != 200 for _, _, code in inside),
    }


def batch_counts(url: str) -> tuple[float, float]:
    """(images scored, model calls) so far, from the server's /metrics."""
    values = {}
    for line in requests.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(("dfd_model_batch_size_sum", "dfd_model_batch_size_count")):
            name, value = line.split()
            values[name] = float(value)
    return values.get("dfd_model_batch_size_sum", 0.0), values.get(
        "dfd_model_batch_size_count", 0.0
    )


def analyze_latency(url: str, path: str, repeats: int) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    times = []
    for _ in range(repeats + 1):  # The first (MTCNN's first call) is not counted.
        start = time.perf_counter()
        answer = requests.post(
            f"{url}/v1/analyze", files={"file": ("photo.jpg", data, "image/jpeg")}, timeout=300
        )
        assert answer.status_code == 200 and answer.json()["kind"] == "photo", answer.text
        times.append(time.perf_counter() - start)
    times = times[1:]
    return {
        "median_ms": 1000 * statistics.median(times),
        "min_ms": 1000 * min(times),
        "max_ms": 1000 * max(times),
        "faces": len(answer.json()["faces"]),
    }


def serve(export_dir: str, work: str, name: str, *flags: str) -> ServerProcess:
    return ServerProcess([f"--export_dir={export_dir}", *flags], work, name=name)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_serving_")
    export_dir = os.path.join(work, "export")
    export.export_detector(
        model_lib.build_model("resnet50", image_size=args.image_size, weights="none"),
        export_dir,
        export.DetectorMetadata(image_size=args.image_size),
    )
    crops = make_crops(64, args.image_size)
    detector = scoring.Detector(export_dir)
    results = {
        "image_size": args.image_size,
        "load_average_at_start": os.getloadavg(),
        "direct_images_per_s": {
            "batch_1": direct_rate(detector, crops, 1, args.seconds),
            f"batch_{args.max_batch_size}": direct_rate(
                detector, crops, args.max_batch_size, args.seconds
            ),
        },
    }
    clients = [int(c) for c in args.clients.split(",")]
    settings = {
        "batching": (
            "--enable_batching",
            f"--max_batch_size={args.max_batch_size}",
            f"--batch_timeout_micros={args.batch_timeout_micros}",
        ),
        "no_batching": ("--noenable_batching",),
    }
    for name, flags in settings.items():
        server = serve(export_dir, work, name, *flags)
        try:
            results[name] = []
            for n in clients:
                # The baseline again, just before (the server idle): on a shared machine the
                # load moves within minutes, and each row's ratio uses the rate next to it.
                direct = direct_rate(detector, crops, args.max_batch_size, args.seconds / 2)
                before = batch_counts(server.url)
                row = load(server.url, crops, n, args.seconds)
                row["direct_batched_before"] = direct
                after = batch_counts(server.url)
                row["mean_batch"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
                results[name].append(row)
        finally:
            server.stop()
    photo = os.path.join(work, "group_photo.jpg")
    big = os.path.join(work, "photo_1280x720.jpg")
    with open(photo, "wb") as f:
        f.write(demo_media.encode(demo_media.group_photo(640, 360, turned=True)))
    with open(big, "wb") as f:
        f.write(demo_media.encode(demo_media.group_photo(1280, 720)))
    server = serve(export_dir, work, "analyze")
    try:
        results["analyze"] = {
            "demo group photo 640x360": analyze_latency(server.url, photo, args.analyze_repeats),
            "photo 1280x720": analyze_latency(server.url, big, args.analyze_repeats),
        }
    finally:
        server.stop()
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table(results, args.max_batch_size))
    return 0


def table(results: dict, max_batch: int) -> str:
    direct = results["direct_images_per_s"]
    best = direct[f"batch_{max_batch}"]
    lines = [
        f"SavedModel called directly, at the start: {direct['batch_1']:.1f} images/s one at a "
        f"time, {best:.1f} images/s in batches of {max_batch}.",
        "",
        "| server | clients | requests/s | direct batched just before, images/s | served / direct "
        "| p50 ms | p99 ms | images per model call | not 200 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ("batching", "no_batching"):
        for row in results[name]:
            lines.append(
                f"| {name.replace('_', ' ')} | {row['clients']} | {row['requests_per_s']:.1f} | "
                f"{row['direct_batched_before']:.1f} | "
                f"{row['requests_per_s'] / row['direct_batched_before']:.0%} | "
                f"{row['p50_ms']:.0f} | "
                f"{row['p99_ms']:.0f} | {row['mean_batch']:.1f} | {row['not_200']} |"
            )
    lines += ["", "| /v1/analyze | faces | median ms | min-max ms |", "|---|---:|---:|---:|"]
    for name, row in results["analyze"].items():
        lines.append(
            f"| {name} | {row['faces']} | {row['median_ms']:.0f} | "
            f"{row['min_ms']:.0f}-{row['max_ms']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
