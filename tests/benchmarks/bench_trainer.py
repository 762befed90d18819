"""Benchmark: the trainer's input pipeline (CPU cost per image) and training throughput.

    .venv/bin/python tests/benchmarks/bench_trainer.py --output_dir=bench_out/bench_trainer \\
        --num_images=4000 --batches=40 --repeats=3 --train_steps=30

(a) Input pipelines on the same --num_images JPEGs (--image_size px), the same
output size (--crop_size, bilinear unless said), the same cores, batch
--batch_size; each loader timed --repeats times, interleaved, median and range:
- ceiling: tf.data decoding the JPEG bytes (already in memory) AND resizing to
  --crop_size, in parallel: what any JPEG pipeline must at least do;
- `ImageDataGenerator.flow_from_directory` (tf_keras; the original notebook's
  loader) with rescale and flips: its default nearest-neighbour resize, and bilinear;
- `trainer.data`, flip only and with the 140k flagfiles' augmentation
  (min_crop_area 0.25, JPEG re-compression from quality 60, blur 0.1, colour
  jitter 0.1): "before" = every augmentation per image in the tf.data map (the
  former pipeline, `augment.reference_augment_image`); "after" = today's
  `input_pipeline.build_dataset` (trainer/training), which keeps decode-and-crop and JPEG
  re-compression on the
  host and leaves flip, jitter and blur to the training step;
- the step's share (`augment.augment_batch` on --batch_size images), timed on
  this CPU: on a GPU it runs on the device.
CPU ms/image is the process's CPU time over the timed batches / images (all
cores, all threads); "per core" = 1000 / that. Wall images/s uses every core
available to the process.
(b) Training: ResNet50 (weights=None, --train_image_size) fed by `trainer.data`
from the TFRecords vs synthetic in-memory tensors; first --warmup_steps untimed.

Needs tf_keras (`make bench` installs it: pip install --no-deps "tf-keras>=2.21,<2.22").
Prints Markdown tables and writes results.json to --output_dir.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow as tf  # noqa: E402

from preprocessing import schema  # noqa: E402
from tests.trainer import tiny_data  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "bench_out", "bench_trainer"))
    parser.add_argument("--num_images", type=int, default=4000, help="JPEGs generated.")
    parser.add_argument("--image_size", type=int, default=256, help="Side of the JPEGs.")
    parser.add_argument("--crop_size", type=int, default=224, help="Pipeline output side.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40, help="Timed batches per loader.")
    parser.add_argument("--repeats", type=int, default=3, help="Timings per loader.")
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


def prepare(
    output_dir: str, num_images: int, image_size: int, num_shards: int = 8
) -> tuple[str, str, list[bytes]]:
    """Writes the JPEGs as a class-folder tree and as a TFDS dataset (once; reused)."""
    folder = os.path.join(output_dir, f"images_{num_images}_{image_size}")
    data_dir = os.path.join(output_dir, f"tfds_{num_images}_{image_size}_{num_shards}")
    rng = np.random.default_rng(0)
    jpegs = [face_like_jpeg(rng, image_size) for _ in range(num_images)]
    if not os.path.isdir(folder):
        for index, data in enumerate(jpegs):
            label = schema.LABEL_NAMES[index % 2]
            os.makedirs(os.path.join(folder, label), exist_ok=True)
            with open(os.path.join(folder, label, f"{index:06d}.jpg"), "wb") as f:
                f.write(data)
    if not os.path.isdir(os.path.join(data_dir, schema.DATASET_NAME)):

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

        tiny_data.store(
            data_dir,
            {"train": examples(), "validation": examples()},
            num_shards=num_shards,
            description="Benchmark copy of real_and_fake_faces.",
        )
    return folder, data_dir, jpegs


# ----------------------------------------------------------------------------- (a)

# The 140k flagfiles' augmentation (deploy/configs/140k_resnet50_*.cfg).
RECIPE = dict(min_crop_area=0.25, jpeg_quality_min=60, blur_probability=0.1, color_jitter=0.1)


def measure(make_iterator, batches: int, batch_size: int, warmup: int = 3) -> dict:
    """Wall images/s and process CPU seconds per image over `batches` batches after warm-up.

    The iterator is dropped afterwards, so its threads stop before the next loader runs.
    """
    iterator = make_iterator()
    for _ in range(warmup):
        next(iterator)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        next(iterator)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    del iterator
    gc.collect()
    images = batches * batch_size
    return {"images_per_second": images / wall, "cpu_seconds_per_image": cpu / images}


def loaders(args, folder, data_dir, jpegs) -> dict:
    """name -> (description, iterator factory, images per batch)."""
    from trainer import data
    from trainer.training import augment, input_pipeline
    from trainer.training import config as config_lib

    size, batch = args.crop_size, args.batch_size
    autotune = tf.data.AUTOTUNE
    builder = data.load_builder(data_dir)

    def config(**recipe):
        return config_lib.TrainConfig(
            data_dir=data_dir,
            model_dir="/unused",
            weights="none",
            image_size=size,
            global_batch_size=batch,
            shuffle_buffer=1000,
            **recipe,
        )

    def ceiling():
        def decode_resize(jpeg):
            image = tf.image.resize(tf.io.decode_jpeg(jpeg, channels=3), [size, size])
            return tf.cast(tf.clip_by_value(image, 0.0, 255.0), tf.uint8)

        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(jpegs)).repeat()
        dataset = dataset.map(decode_resize, num_parallel_calls=autotune, deterministic=False)
        return iter(dataset.batch(batch).prefetch(autotune))

    def image_data_generator(interpolation):
        def make():
            from tf_keras.preprocessing.image import ImageDataGenerator

            generator = ImageDataGenerator(rescale=1.0 / 255, horizontal_flip=True)
            return iter(
                generator.flow_from_directory(
                    folder,
                    target_size=(size, size),
                    batch_size=batch,
                    class_mode="binary",
                    shuffle=True,
                    seed=0,
                    interpolation=interpolation,
                )
            )

        return make

    def before(cfg):
        """The former pipeline: the same reading, every augmentation per image in the map."""

        def parse(example):
            image = input_pipeline.random_resized_crop(
                example[schema.IMAGE], size, cfg.min_crop_area
            )
            return augment.reference_augment_image(image, cfg), input_pipeline._label(example)

        def make():
            dataset = input_pipeline._read(
                builder, "train", cfg, None, training=True, seed=cfg.seed
            )
            dataset = dataset.repeat().shuffle(cfg.shuffle_buffer, seed=cfg.seed)
            dataset = dataset.map(parse, num_parallel_calls=autotune, deterministic=False)
            return iter(dataset.batch(batch, drop_remainder=True).prefetch(autotune))

        return make

    def after(cfg):
        return lambda: iter(
            input_pipeline.build_dataset("train", cfg, training=True, builder=builder)
        )

    def step_share():
        cfg = config(**RECIPE)
        spec = augment.StepAugmentation.from_config(cfg)
        images = tf.constant(
            np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)
        )
        step = tf.function(lambda s: augment.augment_batch(images, augment.step_seed(0, s), spec))

        def iterate():
            index = 0
            while True:
                yield step(tf.constant(index, tf.int64)).numpy()
                index += 1

        return iterate()

    flip, recipe = config(), config(**RECIPE)
    return {
        "ceiling": ("ceiling: tf.io.decode_jpeg + bilinear resize (bytes in memory)", ceiling),
        "idg_nearest": (
            "tf_keras ImageDataGenerator.flow_from_directory (default nearest resize)",
            image_data_generator("nearest"),
        ),
        "idg_bilinear": (
            "tf_keras ImageDataGenerator.flow_from_directory, bilinear resize",
            image_data_generator("bilinear"),
        ),
        "flip_before": ("trainer.data flip-only, before (crop + flip on host)", before(flip)),
        "flip_after": ("trainer.data flip-only, after (crop on host)", after(flip)),
        "recipe_before": (
            "trainer.data 140k augmentation, before (all on host)",
            before(recipe),
        ),
        "recipe_after": (
            "trainer.data 140k augmentation, after (crop + JPEG on host)",
            after(recipe),
        ),
        "step_share": (
            "the step's flip + jitter + blur alone, on this CPU (on a GPU: on the device)",
            step_share,
        ),
    }


def bench_pipelines(args, folder, data_dir, jpegs) -> dict:
    """Each loader `--repeats` times, interleaved so that load changes hit all alike."""
    table = loaders(args, folder, data_dir, jpegs)
    runs = {name: [] for name in table}
    for repeat in range(args.repeats):
        for name, (_, make) in table.items():
            batches = args.batches
            if name.startswith("idg"):  # One pass over the folder at most.
                batches = max(3, min(batches, args.num_images // args.batch_size - 4))
            runs[name].append(measure(make, batches, args.batch_size))
            print(
                f"  repeat {repeat + 1} {name}: "
                f"{runs[name][-1]['images_per_second']:.0f} images/s, "
                f"{1000 * runs[name][-1]['cpu_seconds_per_image']:.2f} CPU ms/image",
                flush=True,
            )
    return {"descriptions": {k: v[0] for k, v in table.items()}, "runs": runs}


def _median_range(values, fmt="{:.0f}"):
    low, mid, high = (fmt.format(v) for v in (min(values), statistics.median(values), max(values)))
    return f"{mid} [{low}-{high}]"


def report_pipelines(results) -> None:
    runs = results["runs"]

    def series(name, key):
        return [r[key] for r in runs[name]]

    def per_core(name):
        return [1 / r["cpu_seconds_per_image"] for r in runs[name]]

    def ratio(name, base, values=per_core):
        return [a / b for a, b in zip(values(name), values(base))]

    def wall(name):
        return series(name, "images_per_second")

    print(
        "| loader | wall images/s | CPU ms/image | images/s per core "
        "| per core vs flip-only before | wall vs ceiling |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, description in results["descriptions"].items():
        ms = [1000 * v for v in series(name, "cpu_seconds_per_image")]
        print(
            f"| {description} | {_median_range(wall(name))} | {_median_range(ms, '{:.2f}')} | "
            f"{_median_range(per_core(name))} | "
            f"{_median_range([100 * v for v in ratio(name, 'flip_before')], '{:.0f}%')} | "
            f"{_median_range([100 * v for v in ratio(name, 'ceiling', wall)], '{:.0f}%')} |"
        )
    print(
        "\nper-core rate of the 140k augmentation pipeline (median of per-repeat ratios): "
        f"before {statistics.median(ratio('recipe_before', 'flip_before')):.0%} and after "
        f"{statistics.median(ratio('recipe_after', 'flip_before')):.0%} of flip-only before; "
        f"after vs flip-only after {statistics.median(ratio('recipe_after', 'flip_after')):.0%}"
    )


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
    import tensorflow as tf

    from trainer import model as model_lib
    from trainer.training import config as config_lib
    from trainer.training import input_pipeline, train_lib

    # The 140k recipe's augmentation (deploy/configs/140k_resnet50_*.cfg): crop and JPEG
    # re-compression on the host for "real", flip/jitter/blur in the train step for both.
    config = config_lib.TrainConfig(
        data_dir=data_dir,
        model_dir="/unused",
        weights="none",
        image_size=args.train_image_size,
        global_batch_size=args.train_batch_size,
        epochs=1,
        shuffle_buffer=1000,
        min_crop_area=0.25,
        jpeg_quality_min=60,
        blur_probability=0.1,
        color_jitter=0.1,
    )
    steps = args.warmup_steps + args.train_steps
    phase = train_lib.Phase(model_lib.FULL_PHASE, 0, 1, config.learning_rate)
    strategy = tf.distribute.get_strategy()
    results = {}
    sources = {
        "real": lambda: input_pipeline.build_dataset("train", config, training=True),
        "synthetic": lambda: input_pipeline.build_synthetic_dataset(config),
    }
    for name, make in sources.items():
        model = model_lib.build_model("resnet50", image_size=config.image_size, weights="none")
        # What the trainer fits: the twin that augments in its train step.
        fit_model = train_lib.fit_model(model, strategy, config)
        train_lib.compile_model(fit_model, config, phase, steps)
        timer = StepTimer(args.warmup_steps)
        fit_model.fit(
            make(), steps_per_epoch=steps, epochs=1, callbacks=[timer.callback], verbose=0
        )
        results[name] = timer.images_per_second(args.train_batch_size)
    return results


def main(argv=None) -> int:
    args = parse_args(argv)
    os.makedirs(args.output_dir, exist_ok=True)
    folder, data_dir, jpegs = prepare(
        args.output_dir, args.num_images, args.image_size, args.num_shards
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": cores,
        "load_average": os.getloadavg(),
        "num_images": args.num_images,
        "image_size": args.image_size,
        "crop_size": args.crop_size,
        "batch_size": args.batch_size,
    }
    print(
        f"\n(a) input pipelines: {args.num_images} JPEGs {args.image_size}px -> "
        f"{args.crop_size}px, batch {args.batch_size}, {cores} cores, "
        f"{args.repeats} repeats of {args.batches} batches (median [min-max])",
        flush=True,
    )
    results["pipelines"] = bench_pipelines(args, folder, data_dir, jpegs)
    report_pipelines(results["pipelines"])
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
    results["load_average_after"] = os.getloadavg()
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
