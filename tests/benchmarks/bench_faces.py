"""Benchmark: faces found and scored per second, for 1280x720 frames and for ready crops.

    .venv/bin/python tests/benchmarks/bench_faces.py --output_dir=bench_out/bench_faces \\
        --frames=8 --crops=64 --repeats=3

One exported detector (ResNet50, weights=None, --image_size px, through the real
export contract), the real MTCNN, the production path (`trainer.inference.media.score_files`,
which `trainer.predict` runs), on the same machine in one run:

- (a) 1280x720 JPEG frames, each with two people at different scales: decode,
  detect (MTCNN), align, encode, score (`--faces=detect`); and detection alone.
- (b) already-cropped faces (256x256 aligned JPEGs, like the 140k images):
  scored as given (`--faces=none`, the baseline of the ratios), and through
  `--faces=auto`, which runs the face detector on each to tell crops from photos.

Each rate is the median of --repeats timed passes (after one untimed warm-up
pass), with the min-max spread. Prints a Markdown table; writes results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from preprocessing import demo_media  # noqa: E402
from preprocessing.media import faces  # noqa: E402
from trainer import export  # noqa: E402
from trainer import model as model_lib  # noqa: E402
from trainer.inference import media, scoring  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_faces"))
    parser.add_argument("--image_size", type=int, default=224, help="The detector's input side.")
    parser.add_argument("--frames", type=int, default=8, help="1280x720 frames per pass.")
    parser.add_argument("--crops", type=int, default=64, help="256x256 crops per pass.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes (median, spread).")
    parser.add_argument("--batch_size", type=int, default=32)
    return parser.parse_args(argv)


def timed(function, count: int, repeats: int) -> dict:
    function()  # Warm-up: tracing, MTCNN's first call, file cache.
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        rates.append(count / (time.perf_counter() - start))
    return {
        "median": statistics.median(rates),
        "min": min(rates),
        "max": max(rates),
        "rates": rates,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench_faces_")
    export_dir = os.path.join(work, "export")
    export.export_detector(
        model_lib.build_model("resnet50", image_size=args.image_size, weights="none"),
        export_dir,
        export.DetectorMetadata(image_size=args.image_size),
    )
    detector = scoring.Detector(export_dir)

    frame_files = []
    for index in range(args.frames):
        path = os.path.join(work, f"frame{index}.jpg")
        pixels = demo_media.group_photo(1280, 720, turned=index % 2 == 1)
        with open(path, "wb") as f:
            f.write(demo_media.encode(pixels))
        frame_files.append(path)
    astronaut = demo_media.astronaut()
    landmarks = faces.FaceDetector().detect(astronaut).faces[0].landmarks
    crop_files = []
    for index in range(args.crops):
        path = os.path.join(work, f"crop{index}.jpg")
        crop = faces.align(astronaut, landmarks, 256, margin=1.0 + 0.002 * index)
        with open(path, "wb") as f:
            f.write(demo_media.encode(crop))
        crop_files.append(path)

    face_detector = faces.FaceDetector()
    frames_pixels = [media.decode_image(open(p, "rb").read(), 1 << 40)[1] for p in frame_files]
    found = [len(face_detector.detect(pixels).faces) for pixels in frames_pixels]

    def score(files, mode):
        options = media.MediaOptions(faces=mode)
        results = list(media.score_files(detector, files, options, args.batch_size, face_detector))
        assert all(result.status == "ok" for result in results), results[:3]

    results = {
        "frames_detect_and_score": timed(
            lambda: score(frame_files, "detect"), args.frames, args.repeats
        ),
        "frames_detect_only": timed(
            lambda: [face_detector.detect(pixels) for pixels in frames_pixels],
            args.frames,
            args.repeats,
        ),
        "crops_as_given": timed(lambda: score(crop_files, "none"), args.crops, args.repeats),
        "crops_auto": timed(lambda: score(crop_files, "auto"), args.crops, args.repeats),
    }
    baseline = results["crops_as_given"]["median"]
    rows = [
        ("1280x720 frames: detect + align + score (--faces=detect)", "frames_detect_and_score"),
        ("1280x720 frames: MTCNN detection only", "frames_detect_only"),
        ("256x256 crops scored as given (--faces=none)", "crops_as_given"),
        ("256x256 crops through --faces=auto (detector runs on each)", "crops_auto"),
    ]
    print(
        f"\nResNet50 (weights=None) at {args.image_size} px, batch {args.batch_size}; "
        f"{args.frames} frames ({sum(found)} faces found, {statistics.mean(found):.1f}/frame), "
        f"{args.crops} crops; median of {args.repeats} passes (min-max).\n"
    )
    print("| what | images/s | spread | vs crops as given |")
    print("|---|---:|---:|---:|")
    for label, key in rows:
        r = results[key]
        print(
            f"| {label} | {r['median']:.2f} | {r['min']:.2f}-{r['max']:.2f} | "
            f"{r['median'] / baseline:.3f}x |"
        )
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "faces_per_frame": found, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
