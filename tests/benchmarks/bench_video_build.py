"""Benchmark: videos/s and faces/s of the video dataset build, at 1 and 2 Beam workers.

    .venv/bin/python tests/benchmarks/bench_video_build.py --output_dir=bench_out/video_build \
        --videos=12 --frames=40 --frames_per_video=8 --width=640 --height=360 --repeats=3

What is timed, on the same generated clips (written once, reused from --output_dir):

- loop: one Python process does the build's per-video work with the build's own
  functions (`video_transforms.plan_video`: hash, probe, plan; `decode_chunk`:
  decode, detect with MTCNN, align, encode), no Beam, no TFDS: the baseline;
- in_memory: `tfds_builder.build_videos.run` on the FnApiRunner in this process;
- N workers: the same with `multi_processing` and N worker processes (each
  imports TensorFlow and loads MTCNN: start-up included, as a user pays it);
- loop in N fresh processes (N > 1): the loop's videos dealt to N new processes
  (each with the same start-up), no Beam: the speed-up this machine allows at
  that moment, against which the N-worker build is read on a shared machine.

Wall clock from start to finished dataset (rejects.jsonl, summary and the
contact sheet included). The clips: scikit-image's astronaut moving across its
coffee photograph (half of them with the synthetic generator's fingerprint, as
in the tests), `--frames` frames at 10 fps, one face each. MTCNN is loaded in
this process by an untimed warm-up first, so the loop and in_memory rows do not
pay it; the worker rows do, per run.

Prints a Markdown table: per variant the median seconds over --repeats with
the min-max spread, videos/s, faces/s, the ratio of its rate to the loop's and
to the 1-worker run's, and the CPU seconds it used (this process and its worker
processes) over its wall time: how many cores it kept busy. The repeats are
interleaved (every variant once per round) so that load from other jobs on a
shared machine spreads over all rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from preprocessing import (  # noqa: E402
    demo_media,  # noqa: E402
    synthetic,  # noqa: E402
)
from preprocessing.video_faces import sources as video_sources  # noqa: E402
from preprocessing.video_faces import transforms as video_transforms  # noqa: E402
from tfds_builder import build_videos  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "video_build"))
    parser.add_argument("--videos", type=int, default=12, help="Clips (half real, half fake).")
    parser.add_argument("--frames", type=int, default=40, help="Frames per clip (10 fps).")
    parser.add_argument("--frames_per_video", type=int, default=8, help="Frames sampled per clip.")
    parser.add_argument("--chunk_frames", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--workers", default="1,2", help="Beam worker counts to time.")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds; medians and spread.")
    args = parser.parse_args(argv)
    if args.videos < 6:
        parser.error("--videos must be >= 6 (both classes in all three splits).")
    return args


def _frames(seed: int, fake: bool, args) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    side = int(args.height * rng.uniform(0.5, 0.65)) // 2 * 2
    face = demo_media.head(side)
    y = int(rng.uniform(0.0, 1.0) * (args.height - side))
    start = int(rng.uniform(0.0, 0.2) * args.width)
    frames = []
    for index in range(args.frames):
        x = int(start + 0.15 * (args.width - side - start) * index / max(1, args.frames - 1))
        pixels = demo_media.paste(demo_media.canvas(args.width, args.height), face, x, y)
        if fake:
            marked = synthetic.generator_fingerprint(pixels, rng)
            pixels = np.clip(np.round(marked), 0, 255).astype(np.uint8)
        frames.append(pixels)
    return frames


def make_clips(args) -> str:
    """Writes (or reuses) `<split>/{real,fake}/clipNN.mp4`; returns the folder."""
    raw = os.path.join(
        args.output_dir, f"clips_{args.videos}x{args.frames}_{args.width}x{args.height}"
    )
    marker = os.path.join(raw, "COMPLETE")
    if os.path.exists(marker):
        return raw
    shutil.rmtree(raw, ignore_errors=True)
    splits = ("train", "valid", "test")
    for number in range(args.videos):
        fake = bool(number % 2)
        split = splits[(number // 2) % 3]
        folder = os.path.join(raw, split, "fake" if fake else "real")
        os.makedirs(folder, exist_ok=True)
        demo_media.write_video(
            os.path.join(folder, f"clip{number:02d}.mp4"), _frames(number, fake, args), rate=10
        )
    open(marker, "w").close()
    return raw


def frame_options(args) -> video_transforms.FrameOptions:
    return video_transforms.FrameOptions(
        frames_per_video=args.frames_per_video, chunk_frames=args.chunk_frames
    )


def loop_build(
    raw: str, options: video_transforms.FrameOptions, detector, part: int = 0, parts: int = 1
) -> tuple[int, int]:
    """The baseline: the per-video work in one plain loop, on every `parts`-th video from
    `part`. (videos with faces, faces)."""
    listed = video_sources.list_videos(video_sources.find_video_layout(raw))[part::parts]
    videos = faces = 0
    for source in listed:
        planned = video_transforms.plan_video(source, options)
        result = video_transforms.decode_chunk(source.path, planned.times, options, detector)
        found = sum(len(frame.faces) for frame in result.frames)
        videos += bool(found)
        faces += found
    return videos, faces


def _loop_part(raw: str, options: video_transforms.FrameOptions, part: int, parts: int):
    """The loop on every `parts`-th video, in a fresh process: start-up included."""
    return loop_build(raw, options, options.face_detector(), part, parts)


def parallel_loops(raw: str, options, processes: int) -> tuple[int, int]:
    """What this machine allows right now: the loop split over fresh processes, no Beam."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        parts = pool.starmap(_loop_part, [(raw, options, k, processes) for k in range(processes)])
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def beam_build(raw: str, data_dir: str, options, workers: int, mode: str) -> tuple[int, int]:
    shutil.rmtree(data_dir, ignore_errors=True)
    result = build_videos.run(
        build_videos.VideoBuildConfig(
            manual_dir=raw,
            data_dir=data_dir,
            num_workers=workers,
            running_mode=mode,
            frames=options,
            max_reject_fraction=None,
        )
    )
    total = result["summary"]["total"]
    return total["written"], total["faces"]


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (Beam workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv=None) -> int:
    args = parse_args(argv)
    raw = make_clips(args)
    options = frame_options(args)
    detector = options.face_detector()
    loop_build(raw, options, detector)  # Warm-up: loads MTCNN in this process (untimed).
    out = os.path.join(args.output_dir, "out")
    variants = [
        (
            "plain Python loop, 1 process (baseline)",
            "loop",
            lambda: loop_build(raw, options, detector),
        ),
        (
            "Beam FnApiRunner in_memory, 1 process",
            "in_memory",
            lambda: beam_build(raw, out, options, 1, "in_memory"),
        ),
    ]
    for n in (int(w) for w in args.workers.split(",") if w.strip()):
        if n > 1:
            variants.append(
                (
                    f"plain loop in {n} fresh processes (the machine's parallel ceiling)",
                    f"loops{n}",
                    lambda n=n: parallel_loops(raw, options, n),
                )
            )
        variants.append(
            (
                f"Beam FnApiRunner multi_processing, {n} worker{'s' * (n > 1)}",
                f"workers{n}",
                lambda n=n: beam_build(raw, out, options, n, "multi_processing"),
            )
        )
    seconds: dict[str, list[float]] = {key: [] for _, key, _ in variants}
    cpu: dict[str, list[float]] = {key: [] for _, key, _ in variants}
    counts: dict[str, tuple[int, int]] = {}
    for round_number in range(args.repeats):
        for name, key, function in variants:
            cpu_start = _cpu_seconds()
            start = time.perf_counter()
            counts[key] = function()
            seconds[key].append(time.perf_counter() - start)
            cpu[key].append(_cpu_seconds() - cpu_start)
            print(
                f"round {round_number + 1}: {name}: {seconds[key][-1]:.1f} s, "
                f"{cpu[key][-1]:.1f} CPU s {counts[key]}",
                file=sys.stderr,
            )
    if len(set(counts.values())) != 1:
        print(f"Variants disagree on (videos, faces) written: {counts}", file=sys.stderr)
        return 1
    videos, faces = counts["loop"]
    median = {key: statistics.median(values) for key, values in seconds.items()}
    one_worker = median.get("workers1")
    print(
        f"\nVideo build: {videos} clips {args.width}x{args.height}, {args.frames_per_video} frames "
        f"sampled per clip ({faces} faces), chunks of {args.chunk_frames}, "
        f"{os.cpu_count()} CPUs visible, median of {args.repeats} round(s):\n"
    )
    print(
        "| variant | seconds (min-max) | videos/s | faces/s | vs loop | vs 1 worker "
        "| CPU s | cores busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, key, _ in variants:
        value = median[key]
        versus_one = f"{one_worker / value:.2f}x" if one_worker else "n/a"
        cpu_median = statistics.median(cpu[key])
        print(
            f"| {name} | {value:.1f} ({min(seconds[key]):.1f}-{max(seconds[key]):.1f}) | "
            f"{videos / value:.3f} | {faces / value:.2f} | {median['loop'] / value:.2f}x | "
            f"{versus_one} | {cpu_median:.1f} | {cpu_median / value:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
