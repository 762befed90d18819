"""Benchmark: both face detectors (RetinaFace, MTCNN) against scoring ready crops, in one run.

    .venv/bin/python tests/benchmarks/bench_faces.py --output_dir=bench_out/bench_faces \\
        --photos=4 --crops=48 --repeats=5

One exported detector (ResNet50, weights=None, at the demo's --image_size, 64 px,
through the real export contract) and the production path
(`trainer.inference.media.score_files`, which `trainer.predict` runs), on the same
machine in one run, for each face detector (`--face_detector`):

- detection alone: ms per 1280x720 frame (a group photo of 6 people, faces
  about 60-110 px, on scikit-image's coffee photograph);
- photos: those frames as JPEG files through `--faces=detect` (decode, detect,
  align, encode, score): ms per face found;
- the demo clip (`preprocessing.demo_media`: 640x360, 20 frames, 4 fps, two people),
  scored as `make demo` scores it (`--max_frames=12`): seconds per video;

and, once, 256x256 aligned crops scored as given (`--faces=none`): ms per crop,
the baseline of the photo ratio ("photo scoring per face vs crop scoring per face").

Each case is timed once per round, rounds interleave the cases (so a burst of load
on the shared machine hits every case alike), after one untimed warm-up round;
figures are medians over --repeats rounds, with the min-max. Prints a Markdown
table; writes results.json.
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

# Six people: (head side, x, y) on a 1280x720 canvas; faces come out about half the head side.
GROUP_OF_SIX = ((200, 40, 60), (170, 330, 90), (220, 560, 40), (150, 860, 80), (190, 1060, 30))
GROUP_OF_SIX += ((210, 500, 420),)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_faces"))
    parser.add_argument("--image_size", type=int, default=64, help="The export's input side.")
    parser.add_argument("--photos", type=int, default=4, help="1280x720 photos per pass.")
    parser.add_argument("--crops", type=int, default=48, help="256x256 crops per pass.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed rounds (median, spread).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--video_frames", type=int, default=12, help="As `make demo`.")
    return parser.parse_args(argv)


def group_of_six(turn: int):
    picture = demo_media.canvas(1280, 720)
    for number, (side, x, y) in enumerate(GROUP_OF_SIX):
        angle = 10 if (number + turn) % 3 == 0 else 0
        picture = demo_media.paste(picture, demo_media.head(side, angle=angle), x, y)
    return picture


def write_inputs(work: str, args) -> dict:
    photos = []
    for index in range(args.photos):
        path = os.path.join(work, f"photo{index}.jpg")
        with open(path, "wb") as f:
            f.write(demo_media.encode(group_of_six(index)))
        photos.append(path)
    astronaut = demo_media.astronaut()
    landmarks = faces.FaceDetector().detect(astronaut).faces[0].landmarks
    crops = []
    for index in range(args.crops):
        path = os.path.join(work, f"crop{index}.jpg")
        crop = faces.align(astronaut, landmarks, 256, margin=1.0 + 0.002 * index)
        with open(path, "wb") as f:
            f.write(demo_media.encode(crop))
        crops.append(path)
    clip = demo_media.write_demo_media(os.path.join(work, "demo"))[1]
    return {"photos": photos, "crops": crops, "clip": clip}


def make_cases(detector, inputs, args) -> tuple[dict, dict]:
    """{case: function returning how many faces it handled}, {case: unit count note}."""
    pixels = [media.decode_image(open(p, "rb").read(), 1 << 40)[1] for p in inputs["photos"]]

    def score(files, **options):
        options = media.MediaOptions(**options)
        results = list(media.score_files(detector, files, options, args.batch_size))
        assert all(result.status == "ok" for result in results), results[:3]
        return results

    cases = {"crops_as_given": lambda: len(score(inputs["crops"], faces="none"))}
    for name in faces.FACE_DETECTORS:
        finder = faces.FaceDetector(detector=name)
        cases[f"{name}/detect_1280x720"] = lambda finder=finder: sum(
            len(finder.detect(image).faces) for image in pixels
        )
        cases[f"{name}/photos"] = lambda name=name: sum(
            len(r.details["faces"]) for r in score(inputs["photos"], faces="detect", detector=name)
        )
        cases[f"{name}/demo_clip"] = lambda name=name: sum(
            track["num_frames"]
            for r in score([inputs["clip"]], detector=name, max_frames=args.video_frames)
            for track in r.details["tracks"]
        )
    return cases


def run_rounds(cases: dict, repeats: int) -> dict:
    """Interleaved rounds: every case once per round; the first round is a warm-up."""
    seconds = {case: [] for case in cases}
    counts = {}
    for round_number in range(repeats + 1):
        for case, function in cases.items():
            start = time.perf_counter()
            counts[case] = function()
            if round_number:
                seconds[case].append(time.perf_counter() - start)
    return {
        case: {
            "median_s": statistics.median(values),
            "min_s": min(values),
            "max_s": max(values),
            "count": counts[case],
            "seconds": values,
        }
        for case, values in seconds.items()
    }


def report(results: dict, args) -> list[str]:
    crop_ms = 1000 * results["crops_as_given"]["median_s"] / args.crops
    lines = [
        "| what | retinaface | mtcnn | retinaface vs mtcnn |",
        "|---|---:|---:|---:|",
    ]

    def row(label, key, scale, unit):
        values = [results[f"{name}/{key}"] for name in faces.FACE_DETECTORS]
        shown = [
            f"{scale(v) * v['median_s']:.{1 if unit == 'ms' else 2}f} {unit} "
            f"({scale(v) * v['min_s']:.1f}-{scale(v) * v['max_s']:.1f})"
            for v in values
        ]
        lines.append(
            f"| {label} | {shown[0]} | {shown[1]} | "
            f"{values[1]['median_s'] / values[0]['median_s']:.1f}x faster |"
        )

    row("detection, per 1280x720 frame", "detect_1280x720", lambda v: 1000 / args.photos, "ms")
    row("photo scoring, per face found", "photos", lambda v: 1000 / v["count"], "ms")
    row("demo clip scored (12 frames), per video", "demo_clip", lambda v: 1.0, "s")
    lines.append("")
    lines.append(f"Crops scored as given (`--faces=none`): {crop_ms:.1f} ms per crop.")
    for name in faces.FACE_DETECTORS:
        photos = results[f"{name}/photos"]
        face_ms = 1000 * photos["median_s"] / photos["count"]
        lines.append(
            f"{name}: photo scoring per face = {crop_ms / face_ms:.2f}x the crop rate "
            f"({photos['count']} faces in {args.photos} photos)."
        )
    return lines


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
    inputs = write_inputs(work, args)
    results = run_rounds(make_cases(detector, inputs, args), args.repeats)
    print(
        f"\nResNet50 (weights=None) at {args.image_size} px, batch {args.batch_size}; "
        f"{args.photos} photos of 6 people (1280x720), {args.crops} crops, the demo clip; "
        f"median of {args.repeats} interleaved rounds (min-max).\n"
    )
    print("\n".join(report(results, args)))
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
