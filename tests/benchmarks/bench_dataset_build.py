"""Benchmark: images/second of the dataset build, Beam vs a plain Python loop.

    .venv/bin/python tests/benchmarks/bench_dataset_build.py --output_dir=bench_out/dataset \
        --num_images=5000 --image_size=256 --workers=1,2 --repeats=1

What is compared, on the same synthetic Kaggle-layout set (generated once and
reused from --output_dir):

- loop: one Python process lists the inputs, reads each file, validates and
  normalises it (`preprocessing.images.normalise`), checks SHA-256 duplicates,
  encodes the TFDS example with the dataset's own features and writes one
  TFRecord file per split. The same work as the job, without Beam or TFDS'
  shuffle: the baseline;
- beam: `preprocessing.build.run` on the local FnApiRunner in multi_processing
  mode with N worker processes: listing, validation, duplicate grouping, TFDS'
  shuffle and sharded writing, rejects.jsonl and the summary; wall clock from
  start to finished dataset, worker start-up included.

Prints a Markdown table: median seconds over --repeats, images/second, and
images/second per core (per worker process; the loop uses one), and the ratio
of each Beam per-core rate to the loop's.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from preprocessing import build  # noqa: E402
from preprocessing import images  # noqa: E402
from preprocessing import schema  # noqa: E402
from preprocessing import sources  # noqa: E402
from preprocessing import synthetic  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out",
                                                             "bench_dataset_build"))
    parser.add_argument("--num_images", type=int, default=5000,
                        help="Total synthetic images (both classes, all splits; 5:1:1 split).")
    parser.add_argument("--image_size", type=int, default=256)
    parser.add_argument("--workers", default="1,2", help="Beam worker counts to time.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per variant; medians.")
    args = parser.parse_args(argv)
    if args.num_images < 14:
        parser.error(f"--num_images={args.num_images} is below 14 (2 classes x 7 split parts).")
    return args


def make_inputs(output_dir: str, num_images: int, image_size: int) -> str:
    """Writes (or reuses) the synthetic set; returns its folder."""
    per_class = num_images // 2
    counts = {"train": per_class * 5 // 7, "valid": per_class // 7}
    counts["test"] = per_class - counts["train"] - counts["valid"]
    raw = os.path.join(output_dir, f"raw_{num_images}_{image_size}")
    marker = os.path.join(raw, "COMPLETE")
    if not os.path.exists(marker):
        shutil.rmtree(raw, ignore_errors=True)
        start = time.perf_counter()
        synthetic.write_dataset(raw, image_size, counts, seed=0)
        open(marker, "w").close()
        print(f"generated {2 * sum(counts.values())} images in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
    return raw


def loop_build(raw: str, out_dir: str) -> int:
    """The baseline: the build's per-image work in one plain Python loop."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    features = schema.features()
    serializer = tfds.core.example_serializer.ExampleSerializer(features.get_serialized_info())
    listed = sources.list_sources(sources.find_layout(raw))
    by_split = collections.defaultdict(list)
    rejects, seen = [], {}
    for source in listed:
        if source.problem:
            rejects.append((source.id, source.problem))
            continue
        try:
            with tf.io.gfile.GFile(source.path, "rb") as f:
                stored = images.normalise(f.read())
        except images.InvalidImageError as error:
            rejects.append((source.id, error.reason))
            continue
        seen.setdefault(stored.sha256, source.id)
        example = {schema.IMAGE: stored.jpeg, schema.LABEL: source.label, schema.ID: source.id,
                   schema.FILENAME: os.path.basename(source.id), schema.SHA256: stored.sha256}
        by_split[source.split].append(
            (source.id, serializer.serialize_example(features.encode_example(example))))
    written = 0
    for split, records in by_split.items():
        path = os.path.join(out_dir, f"{schema.DATASET_NAME}-{split}.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for _, record in sorted(records):
                writer.write(record)
                written += 1
    return written


def beam_build(raw: str, data_dir: str, workers: int) -> int:
    shutil.rmtree(data_dir, ignore_errors=True)
    result = build.run(build.BuildConfig(
        manual_dir=raw, data_dir=data_dir, num_workers=workers,
        running_mode="multi_processing", max_reject_fraction=None))
    return result["summary"]["total"]["written"]


def main(argv=None) -> int:
    args = parse_args(argv)
    raw = make_inputs(args.output_dir, args.num_images, args.image_size)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    timings: dict[str, list[float]] = collections.defaultdict(list)
    counts = {}
    for _ in range(args.repeats):
        start = time.perf_counter()
        counts["loop"] = loop_build(raw, os.path.join(args.output_dir, "loop"))
        timings["loop"].append(time.perf_counter() - start)
        for n in workers:
            start = time.perf_counter()
            counts[f"beam{n}"] = beam_build(raw, os.path.join(args.output_dir, f"beam{n}"), n)
            timings[f"beam{n}"].append(time.perf_counter() - start)
    if len(set(counts.values())) != 1:
        print(f"Mismatch in examples written: {counts}", file=sys.stderr)
        return 1
    images_count = counts["loop"]
    loop_per_core = images_count / statistics.median(timings["loop"])
    print(f"\nDataset build, {images_count} synthetic {args.image_size}x{args.image_size} JPEGs, "
          f"{os.cpu_count()} CPUs visible, median of {args.repeats} run(s):\n")
    print("| variant | cores | seconds | images/s | images/s per core | per-core vs loop |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("plain Python loop (baseline)", "loop", 1)]
    rows += [(f"Beam FnApiRunner, multi_processing, {n} worker{'s' * (n > 1)}", f"beam{n}", n)
             for n in workers]
    for name, key, cores in rows:
        seconds = statistics.median(timings[key])
        rate = images_count / seconds
        print(f"| {name} | {cores} | {seconds:.1f} | {rate:.0f} | {rate / cores:.0f} | "
              f"{rate / cores / loop_per_core:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
