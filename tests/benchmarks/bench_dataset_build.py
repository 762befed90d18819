"""Benchmark: images/second of the dataset build, Beam vs a plain Python loop.

    .venv/bin/python tests/benchmarks/bench_dataset_build.py --output_dir=bench_out/dataset \
        --num_images=5000 --image_size=256 --workers=1,2 --repeats=1

What is compared, on the same synthetic Kaggle-layout set (generated once and
reused from --output_dir):

- loop: one Python process lists the inputs, reads each file, validates and
  normalises it (`preprocessing.media.images.normalise`), checks SHA-256 duplicates,
  encodes the TFDS example with the dataset's own features and writes one
  TFRecord file per split. The same work as the job, without Beam or TFDS'
  shuffle: the baseline;
- beam: `tfds_builder.build.run` on the local FnApiRunner in multi_processing
  mode with N worker processes: listing, validation, duplicate grouping, TFDS'
  shuffle and sharded writing, rejects.jsonl and the summary; wall clock from
  start to finished dataset, worker start-up included.

- beam in_memory: the same, in one process (no worker processes).

Every variant is also timed on a tiny copy of the set (2 images per class and
split, 12 in all): that is its start-up cost (pipeline construction, worker
processes, one bundle per stage). The marginal rate, (N - 12) images over
(t_N - t_12) seconds, is what a variant adds per image once started, i.e. what
dominates on the 140k-image Kaggle set.

Prints a Markdown table: median seconds over --repeats, images/second, and
images/second per core (per worker process; the loop and in_memory use one),
the ratio of each per-core rate to the loop's, start-up seconds, and the same
ratio for the marginal rate.
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

from preprocessing import schema, synthetic  # noqa: E402
from preprocessing.media import images  # noqa: E402
from preprocessing.real_and_fake_faces import sources  # noqa: E402
from tfds_builder import build  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output_dir", default=os.path.join(REPO, "bench_out", "bench_dataset_build")
    )
    parser.add_argument(
        "--num_images",
        type=int,
        default=5000,
        help="Total synthetic images (both classes, all splits; 5:1:1 split).",
    )
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
        print(
            f"generated {2 * sum(counts.values())} images in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )
    return raw


def make_tiny(raw: str, output_dir: str, per_class: int = 2) -> str:
    """A <split>/{real,fake}/ copy of `per_class` images per class and split (no CSVs)."""
    tiny = os.path.join(output_dir, "tiny")
    shutil.rmtree(tiny, ignore_errors=True)
    image_root = os.path.join(raw, synthetic.KAGGLE_IMAGE_ROOT)
    for folder in synthetic.SPLIT_FOLDERS:
        for class_name in schema.LABEL_NAMES:
            source_dir = os.path.join(image_root, folder, class_name)
            os.makedirs(os.path.join(tiny, folder, class_name))
            for name in sorted(os.listdir(source_dir))[:per_class]:
                shutil.copy(os.path.join(source_dir, name), os.path.join(tiny, folder, class_name))
    return tiny


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
        example = {
            schema.IMAGE: stored.jpeg,
            schema.LABEL: source.label,
            schema.ID: source.id,
            schema.FILENAME: os.path.basename(source.id),
            schema.SHA256: stored.sha256,
        }
        by_split[source.split].append(
            (source.id, serializer.serialize_example(features.encode_example(example)))
        )
    written = 0
    for split, records in by_split.items():
        path = os.path.join(out_dir, f"{schema.DATASET_NAME}-{split}.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for _, record in sorted(records):
                writer.write(record)
                written += 1
    return written


def beam_build(raw: str, data_dir: str, workers: int, mode: str = "multi_processing") -> int:
    shutil.rmtree(data_dir, ignore_errors=True)
    result = build.run(
        build.BuildConfig(
            manual_dir=raw,
            data_dir=data_dir,
            num_workers=workers,
            running_mode=mode,
            max_reject_fraction=None,
        )
    )
    return result["summary"]["total"]["written"]


def main(argv=None) -> int:
    args = parse_args(argv)
    raw = make_inputs(args.output_dir, args.num_images, args.image_size)
    tiny = make_tiny(raw, args.output_dir)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    # (row name, key, cores, function(input folder, output folder) -> examples written)
    variants = [
        ("plain Python loop (baseline)", "loop", 1, loop_build),
        (
            "Beam FnApiRunner, in_memory (one process)",
            "beam_in_memory",
            1,
            lambda source, out: beam_build(source, out, 1, "in_memory"),
        ),
    ]
    variants += [
        (
            f"Beam FnApiRunner, multi_processing, {n} worker{'s' * (n > 1)}",
            f"beam{n}",
            n,
            lambda source, out, n=n: beam_build(source, out, n),
        )
        for n in workers
    ]
    timings: dict[str, list[float]] = collections.defaultdict(list)
    counts: dict[str, int] = {}
    for _ in range(args.repeats):
        for _, key, _, function in variants:
            for size, source in (("tiny", tiny), ("full", raw)):
                start = time.perf_counter()
                counts[key, size] = function(source, os.path.join(args.output_dir, "out", key))
                timings[key, size].append(time.perf_counter() - start)
    for size in ("tiny", "full"):
        if len({n for (_, s), n in counts.items() if s == size}) != 1:
            print(f"Mismatch in examples written: {counts}", file=sys.stderr)
            return 1
    n_full, n_tiny = counts["loop", "full"], counts["loop", "tiny"]
    loop_seconds = statistics.median(timings["loop", "full"])
    loop_rate = n_full / loop_seconds
    loop_marginal = (n_full - n_tiny) / max(
        1e-9, loop_seconds - statistics.median(timings["loop", "tiny"])
    )
    print(
        f"\nDataset build, {n_full} synthetic {args.image_size}x{args.image_size} JPEGs, "
        f"{os.cpu_count()} CPUs visible, median of {args.repeats} run(s):\n"
    )
    print(
        "| variant | cores | seconds | images/s | images/s per core | per-core vs loop "
        "| start-up s (12 images) | marginal images/s per core | marginal per-core vs loop |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, key, cores, _ in variants:
        seconds = statistics.median(timings[key, "full"])
        startup = statistics.median(timings[key, "tiny"])
        per_core = n_full / seconds / cores
        # Below ~20% of the run, the difference is noise: no marginal figure.
        if seconds - startup > 0.2 * seconds:
            marginal = (n_full - n_tiny) / (seconds - startup) / cores
            marginal_cells = f"{marginal:.0f} | {marginal / loop_marginal:.0%}"
        else:
            marginal_cells = "n/a (start-up dominates) | n/a"
        print(
            f"| {name} | {cores} | {seconds:.1f} | {n_full / seconds:.0f} | {per_core:.0f} | "
            f"{per_core / loop_rate:.0%} | {startup:.1f} | {marginal_cells} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
