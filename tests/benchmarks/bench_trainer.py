"""Benchmark: the trainer's input pipeline and training throughput, images/second.

    .venv/bin/python tests/benchmarks/bench_trainer.py --output_dir=bench_out/bench_trainer \\
        --num_images=4000 --batches=60 --train_steps=30

(a) Input pipeline, on the same --num_images 256x256 JPEGs, same cores:
- `trainer.data`: the training pipeline (TFDS shards, SkipDecoding, fused
  decode_and_crop_jpeg random-resized crop, flip, AUTOTUNE map, batch, prefetch)
  at --crop_size;
- `ImageDataGenerator`: tf_keras' `flow_from_directory` (the original notebook's
  loader) with rescale and horizontal flips, at --crop_size;
- bare `decode_jpeg`: tf.data decoding the same JPEG bytes (already in memory)
  in parallel and batching them, nothing else: the ceiling for any JPEG pipeline.
(b) Training: the same model (ResNet50, weights=None, --train_image_size) trained
  with `trainer.train.run`-equivalent compile, fed by `trainer.data` from the
  TFRecords vs by synthetic in-memory tensors (`data.build_synthetic_dataset`).
  The first --warmup_steps steps (tracing) are not timed.

Needs tf_keras (`make bench` installs it: pip install --no-deps "tf-keras>=2.21,<2.22").
Prints a Markdown table and writes results.json to --output_dir.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from preprocessing import schema  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_trainer"))
    parser.add_argument("--num_images", type=int, default=4000, help="256x256 JPEGs generated.")
    parser.add_argument("--image_size", type=int, default=256, help="Side of the JPEGs.")
    parser.add_argument("--crop_size", type=int, default=224, help="Pipeline output side.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60, help="Timed batches per loader.")
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--train_image_size", type=int, default=224)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--train_steps", type=int, default=30, help="Timed training steps.")
    parser.add_argument("--warmup_steps", type=int, default=5)
    parser.add_argument("--skip_training", action="store_true", help="Only part (a).")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- data


def face_like_jpeg(rng: np.random.Generator, size: int) -> bytes:
    """A smooth random image with mild noise: compresses like a photo, not like noise."""
    coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
    image += rng.normal(0, 6, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def prepare(args) -> tuple[str, str, list[bytes]]:
    """Writes the JPEGs as a class-folder tree and as a TFDS dataset (once; reused)."""
    folder = os.path.join(args.output_dir, f"images_{args.num_images}_{args.image_size}")
    data_dir = os.path.join(args.output_dir, f"tfds_{args.num_images}_{args.image_size}")
    rng = np.random.default_rng(0)
    jpegs = [face_like_jpeg(rng, args.image_size) for _ in range(args.num_images)]
    if not os.path.isdir(folder):
        for index, data in enumerate(jpegs):
            label = schema.LABEL_NAMES[index % 2]
            os.makedirs(os.path.join(folder, label), exist_ok=True)
            with open(os.path.join(folder, label, f"{index:06d}.jpg"), "wb") as f:
                f.write(data)
    if not os.path.isdir(os.path.join(data_dir, schema.DATASET_NAME)):
        import hashlib

        def examples():
            for index, data in enumerate(jpegs):
                label = index % 2
                name = f"{index:06d}.jpg"
                yield (
                    index,
                    {
                        schema.IMAGE: data,
                        schema.LABEL: label,
                        schema.ID: f"train/{schema.LABEL_NAMES[label]}/{name}",
                        schema.FILENAME: name,
                        schema.SHA256: hashlib.sha256(data).hexdigest(),
                    },
                )

        tfds.dataset_builders.store_as_tfds_dataset(
            name=schema.DATASET_NAME,
            version="1.0.0",
            features=schema.features(),
            split_datasets={"train": examples(), "validation": examples()},
            data_dir=data_dir,
            download_config=tfds.download.DownloadConfig(num_shards=args.num_shards),
        )
    return folder, data_dir, jpegs


# ----------------------------------------------------------------------------- (a)


def time_batches(iterator, batches: int, batch_size: int, warmup: int = 3) -> float:
    """Images/second over `batches` batches after `warmup` untimed ones."""
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def bench_pipeline(args, data_dir) -> float:
    from trainer import config as config_lib
    from trainer import data

    config = config_lib.TrainConfig(
        data_dir=data_dir,
        model_dir="/unused",
        weights="none",
        image_size=args.crop_size,
        global_batch_size=args.batch_size,
    )
    dataset = data.build_dataset("train", config, training=True)
    return time_batches(iter(dataset), args.batches, args.batch_size)


def bench_image_data_generator(args, folder) -> float:
    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True).flow_from_directory(
        folder,
        target_size=(args.crop_size, args.crop_size),
        batch_size=args.batch_size,
        class_mode="binary",
        shuffle=True,
        seed=0,
    )
    batches = max(3, min(args.batches, len(generator) - 3))
    return time_batches(iter(generator), batches, args.batch_size)


def bench_bare_decode(args, jpegs) -> float:
    dataset = (
        tf.data.Dataset.from_tensor_slices(tf.constant(jpegs))
        .repeat()
        .map(
            lambda j: tf.io.decode_jpeg(j, channels=3),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False,
        )
        .batch(args.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    return time_batches(iter(dataset), args.batches, args.batch_size)


# ----------------------------------------------------------------------------- (b)


class StepTimer:
    """Wall time of the steps after the warm-up ones."""

    def __init__(self, warmup: int):
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_train_batch_end(self, batch, logs=None):
                self.times.append(time.perf_counter())

        self.callback = Callback()
        self.warmup = warmup

    def images_per_second(self, batch_size: int) -> float:
        times = self.callback.times[self.warmup - 1 :]
        return (len(times) - 1) * batch_size / (times[-1] - times[0])


def bench_training(args, data_dir) -> dict:
    from trainer import config as config_lib
    from trainer import data, train
    from trainer import model as model_lib

    config = config_lib.TrainConfig(
        data_dir=data_dir,
        model_dir="/unused",
        weights="none",
        image_size=args.train_image_size,
        global_batch_size=args.train_batch_size,
        epochs=1,
        shuffle_buffer=1000,
    )
    steps = args.warmup_steps + args.train_steps
    phase = train.Phase(model_lib.FULL_PHASE, 0, 1, config.learning_rate)
    results = {}
    sources = {
        "real": lambda: data.build_dataset("train", config, training=True),
        "synthetic": lambda: data.build_synthetic_dataset(config),
    }
    for name, make in sources.items():
        model = model_lib.build_model("resnet50", image_size=config.image_size, weights="none")
        train.compile_model(model, config, phase, steps)
        timer = StepTimer(args.warmup_steps)
        model.fit(make(), steps_per_epoch=steps, epochs=1, callbacks=[timer.callback], verbose=0)
        results[name] = timer.images_per_second(args.train_batch_size)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    folder, data_dir, jpegs = prepare(args)
    results = {
        "cores": os.cpu_count(),
        "num_images": args.num_images,
        "image_size": args.image_size,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
    }
    results["pipeline"] = bench_pipeline(args, data_dir)
    results["bare_decode"] = bench_bare_decode(args, jpegs)
    results["image_data_generator"] = bench_image_data_generator(args, folder)
    rows = [
        ("trainer.data training pipeline", results["pipeline"]),
        ("tf_keras ImageDataGenerator.flow_from_directory", results["image_data_generator"]),
        ("bare tf.io.decode_jpeg (ceiling)", results["bare_decode"]),
    ]
    print(
        f"\n(a) input pipeline: {args.num_images} JPEGs {args.image_size}px -> "
        f"{args.crop_size}px, batch {args.batch_size}, {os.cpu_count()} cores"
    )
    print("| loader | images/s | vs ImageDataGenerator | vs bare decode |\n|---|---:|---:|---:|")
    for name, value in rows:
        print(
            f"| {name} | {value:.0f} | {value / results['image_data_generator']:.1f}x | "
            f"{100 * value / results['bare_decode']:.0f}% |"
        )
    if not args.skip_training:
        training = bench_training(args, data_dir)
        results["training"] = training
        print(
            f"\n(b) training ResNet50 (weights=None) {args.train_image_size}px, batch "
            f"{args.train_batch_size}, {args.train_steps} timed steps"
        )
        print("| input | images/s | vs synthetic |\n|---|---:|---:|")
        for name in ("real", "synthetic"):
            print(
                f"| {name} | {training[name]:.1f} | "
                f"{100 * training[name] / training['synthetic']:.1f}% |"
            )
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
