"""Input pipelines: TFDS shards -> per-replica batches of uint8 pixels and float labels.

`build_dataset(split, config, input_context)` is the `dataset_fn` handed to
`strategy.distribute_datasets_from_function`: each input pipeline (one per
worker) reads its own subset of the TFRecord shards, batches at the
per-replica size and prefetches last.

Choices, and why:
- `SkipDecoding`: TFDS would decode the whole JPEG; the training crop decodes
  only the crop window (`decode_and_crop_jpeg`), which is cheaper.
- The reading order (shard order, shuffle buffer) is deterministic given
  `--seed` and the epoch, while the decode map is free to finish out of order
  unless `--deterministic`. A resumed run can then skip exactly the examples
  the killed run had consumed in its last epoch, without giving up parallel
  decoding and without re-reading earlier epochs.
- Labels come out as float32 [batch, 1], matching the model's one logit.
- The host does only the augmentation that needs the JPEG codec (the fused
  decode-and-crop, JPEG re-compression); flip, colour jitter and blur run on the
  batch in the training step (`trainer.training.augment`), where the accelerator has the
  cycles. Both are stateless, keyed by `--seed` and the example's position.
"""

from __future__ import annotations

import math

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import schema
from trainer import data, export
from trainer.training import augment as augment_lib
from trainer.training import config as config_lib

AUTOTUNE = tf.data.AUTOTUNE


def pipeline_example_counts(
    builder: tfds.core.DatasetBuilder, split: str, num_input_pipelines: int
) -> list[int]:
    """Examples of `split` that each input pipeline reads (the sharding `_read` applies).

    With at least as many shards as pipelines, TFDS gives pipeline i the files
    i, i+P, i+2P, ...; with fewer, every pipeline keeps one example in P.
    """
    info = builder.info.splits[split]
    if num_input_pipelines <= 1:
        return [info.num_examples]
    if info.num_shards >= num_input_pipelines:
        lengths = list(info.shard_lengths)
        return [sum(lengths[i::num_input_pipelines]) for i in range(num_input_pipelines)]
    return [
        len(range(i, info.num_examples, num_input_pipelines)) for i in range(num_input_pipelines)
    ]


def eval_steps(
    builder: tfds.core.DatasetBuilder,
    split: str,
    config: config_lib.TrainConfig,
    num_input_pipelines: int = 1,
) -> int:
    """Global batches that hold every example of `split` once, on every input pipeline.

    Every pipeline must yield the same number of full per-replica batches, or a
    replica gets an empty or short batch (and the cross-replica reduction fails);
    `build_dataset(..., eval_steps=...)` pads each pipeline to this count with
    zero-weight examples.
    """
    per_step = config.global_batch_size // num_input_pipelines
    counts = pipeline_example_counts(builder, split, num_input_pipelines)
    return max(1, max(math.ceil(count / per_step) for count in counts))


def random_resized_crop(
    jpeg: tf.Tensor, image_size: int, min_area: float, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """Decodes a random crop (area in [min_area, 1], aspect 3/4..4/3) and resizes it; uint8 out.

    The crop window is chosen from the JPEG header alone and only that window
    is decoded: the fused op skips the pixels that would be thrown away. With
    `seed` (a [2] int stateless seed) the window is a function of the seed.
    """
    shape = tf.image.extract_jpeg_shape(jpeg)
    box_kwargs = dict(
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    if seed is None:
        begin, size, _ = tf.image.sample_distorted_bounding_box(shape, **box_kwargs)
    else:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, seed=seed, **box_kwargs
        )
    offset_y, offset_x, _ = tf.unstack(begin)
    height, width, _ = tf.unstack(size)
    window = tf.stack([offset_y, offset_x, height, width])
    image = tf.image.decode_and_crop_jpeg(jpeg, window, channels=3)
    resized = tf.image.resize(image, [image_size, image_size], method="bilinear")
    # Truncation, not rounding: a training-time augmentation needs no exact pixels.
    return tf.cast(tf.clip_by_value(resized, 0.0, 255.0), tf.uint8)


def recompress_jpeg(image: tf.Tensor, quality_min: int, seed: tf.Tensor) -> tf.Tensor:
    """Re-encodes half the images as JPEG at a random quality in [quality_min, 100); uint8 in/out.

    Encodes and decodes the uint8 pixels directly (no float round trip).

    Makes the detector robust to re-encoding by the platforms an image passes
    through, instead of learning the training set's compression fingerprint.
    Runs on the host: it needs the JPEG codec, which accelerators lack here.
    """
    coin_seed, quality_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    recompress = tf.random.stateless_uniform([], coin_seed) < augment_lib.JPEG_PROBABILITY
    out = tf.cond(
        recompress,
        lambda: tf.image.stateless_random_jpeg_quality(image, quality_min, 100, quality_seed),
        lambda: image,
    )
    return tf.ensure_shape(out, image.shape)


def element_seed(seed: int, pipeline: int, index: tf.Tensor) -> tf.Tensor:
    """The stateless seed of the `index`-th training example read by input pipeline `pipeline`."""
    base = tf.constant([seed, 0], tf.int64)
    base = tf.random.experimental.stateless_fold_in(base, pipeline)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))


def _label(example) -> tf.Tensor:
    return tf.reshape(tf.cast(example[schema.LABEL], tf.float32), [1])


def _options(config: config_lib.TrainConfig) -> tf.data.Options:
    options = tf.data.Options()
    # Each pipeline picks its shards itself (ReadConfig + input_context); the
    # strategy must not shard a second time.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    # Reading order stays reproducible (see module docstring); the decode map
    # opts out of ordering itself unless --deterministic.
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return options


def _read(
    builder,
    split: str,
    config: config_lib.TrainConfig,
    input_context: tf.distribute.InputContext | None,
    *,
    training: bool,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Raw examples (JPEG bytes not decoded) of this pipeline's part of `split`."""
    pipelines = input_context.num_input_pipelines if input_context else 1
    shards = data.num_shards(builder, split)
    by_files = input_context is not None and pipelines > 1 and shards >= pipelines
    read_config = tfds.ReadConfig(
        options=_options(config),
        shuffle_seed=seed if training else None,
        input_context=input_context if by_files else None,
        try_autocache=False,
    )
    # Parse only the two features training needs (not id/filename/sha256) and
    # keep the JPEG bytes undecoded: the map below decodes only the crop.
    decoders = tfds.decode.PartialDecoding(
        {schema.IMAGE: True, schema.LABEL: True},
        decoders={schema.IMAGE: tfds.decode.SkipDecoding()},
    )
    dataset = builder.as_dataset(
        split=split, shuffle_files=training, decoders=decoders, read_config=read_config
    )
    if pipelines > 1 and not by_files:
        # Fewer shards than pipelines: every pipeline reads every file and keeps
        # one example in N. Correct, but N times the reading; rebuild the dataset
        # with more shards for real multi-worker runs.
        logging.warning(
            "Split %s has %d shard(s) for %d input pipelines; sharding by example.",
            split,
            shards,
            pipelines,
        )
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    return dataset


def per_replica_batch(
    config: config_lib.TrainConfig, input_context: tf.distribute.InputContext | None
) -> int:
    if input_context is None:
        return config.global_batch_size
    return input_context.get_per_replica_batch_size(config.global_batch_size)


def build_dataset(
    split: str,
    config: config_lib.TrainConfig,
    input_context: tf.distribute.InputContext | None = None,
    *,
    training: bool,
    epochs: range | None = None,
    steps_per_epoch: int = 0,
    first_step: int = 0,
    builder: tfds.core.DatasetBuilder | None = None,
    eval_steps: int = 0,
) -> tf.data.Dataset:
    """One input pipeline of `split`: (uint8 images [b, s, s, 3], float32 labels [b, 1]).

    Evaluation pipelines add a third element, float32 sample weights [b, 1]: 1
    for a real example, 0 for padding (see `eval_steps`), so metrics count every
    example of the split exactly once whatever the replica count.

    Args:
        split: TFDS split name.
        config: the run's configuration (image size, batch, augmentation, seed).
        input_context: from `distribute_datasets_from_function`; None without a strategy.
        training: random crop and JPEG re-compression (the host's part of the
            augmentation; flip, colour jitter and blur run in the training step, see
            `trainer.training.augment`), shuffled and repeated; otherwise the
            evaluation centre crop (the export's own), one pass in file order.
        epochs: training only: the epochs this stream covers, each exactly
            `steps_per_epoch` steps long and shuffled with its own seed
            (`config.seed + epoch`), so that epoch k's data does not depend on
            where the run started. None: one endless stream (benchmarks).
        steps_per_epoch: steps (global batches) per epoch; needed with `epochs`.
        first_step: steps of the first epoch already trained (a resumed run); their
            examples are skipped before decoding, so training continues where the
            killed run stopped instead of replaying data.
        builder: an open builder (default: opened from `config.data_dir`).
        eval_steps: evaluation only: pad this pipeline with zero-weight examples to
            exactly `eval_steps` global batches of full per-replica batches
            (`eval_steps(...)` computes it); 0: one pass, last batch partial.

    Returns:
        A batched, prefetched `tf.data.Dataset` at the per-replica batch size.
    """
    builder = builder or data.load_builder(config.data_dir, config.dataset)
    batch = per_replica_batch(config, input_context)
    if not training:
        return _eval_dataset(builder, split, config, input_context, batch, eval_steps)
    numbered = _numbered_examples(
        builder,
        split,
        config,
        input_context,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        first_step=first_step,
    )
    return _train_batches(numbered, config, input_context, batch)


def _map_options(config: config_lib.TrainConfig) -> dict:
    """`Dataset.map` arguments of the decode maps: parallel, ordered only with --deterministic."""
    return {"num_parallel_calls": AUTOTUNE, "deterministic": config.deterministic}


def _eval_dataset(
    builder,
    split: str,
    config: config_lib.TrainConfig,
    input_context: tf.distribute.InputContext | None,
    batch: int,
    eval_steps: int,
) -> tf.data.Dataset:
    """Every example once, in file order, centre-cropped as the export crops, weighted 1.

    With `eval_steps`, zero-weight padding fills the pipeline to exactly that
    many global batches (see `eval_steps`).
    """
    dataset = _read(builder, split, config, input_context, training=False)
    if config.cache:
        dataset = dataset.cache()

    def parse_eval(example):
        image = export.decode_for_eval(example[schema.IMAGE], config.image_size)
        return image, _label(example), tf.ones([1], tf.float32)

    dataset = dataset.map(parse_eval, **_map_options(config))
    if not eval_steps:
        return dataset.batch(batch, drop_remainder=False).prefetch(AUTOTUNE)
    pipelines = input_context.num_input_pipelines if input_context else 1
    size = config.image_size
    padding = tf.data.Dataset.from_tensors(
        (tf.zeros([size, size, 3], tf.uint8), tf.zeros([1]), tf.zeros([1]))
    ).repeat()
    dataset = dataset.concatenate(padding).take(
        eval_steps * (config.global_batch_size // pipelines)
    )
    return dataset.batch(batch, drop_remainder=True).prefetch(AUTOTUNE)


def _numbered_examples(
    builder,
    split: str,
    config: config_lib.TrainConfig,
    input_context: tf.distribute.InputContext | None,
    *,
    epochs: range | None,
    steps_per_epoch: int,
    first_step: int,
) -> tf.data.Dataset:
    """(index, raw example) of the training stream, shuffled per epoch (see `build_dataset`).

    Each example is numbered by its position in the run (epoch, step, slot),
    which keys its random crop and re-compression: reproducible from --seed, and
    a resumed run draws what the uninterrupted one would have.

    Raises:
        ValueError: `epochs` is empty, or given without `steps_per_epoch`.
    """
    pipelines = input_context.num_input_pipelines if input_context else 1
    examples_per_step = config.global_batch_size // pipelines

    # With --cache, one in-memory copy of the JPEG bytes (before any random op)
    # serves every epoch; file order is then fixed and only the buffer reshuffles.
    cached = (
        _read(builder, split, config, input_context, training=True, seed=config.seed).cache()
        if config.cache
        else None
    )

    def stream(seed: int) -> tf.data.Dataset:
        dataset = (
            cached
            if cached is not None
            else _read(builder, split, config, input_context, training=True, seed=seed)
        )
        return dataset.repeat().shuffle(config.shuffle_buffer, seed=seed)

    if epochs is None:
        return stream(config.seed).enumerate()
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} must be > 0 with `epochs`.")
    dataset = None
    for index, epoch in enumerate(epochs):
        skip = first_step if index == 0 else 0
        part = stream(config.seed + epoch).skip(skip * examples_per_step)
        part = part.take((steps_per_epoch - skip) * examples_per_step)
        part = part.enumerate((epoch * steps_per_epoch + skip) * examples_per_step)
        dataset = part if dataset is None else dataset.concatenate(part)
    if dataset is None:
        raise ValueError(f"epochs={epochs} is empty.")
    return dataset


def _train_batches(
    numbered: tf.data.Dataset,
    config: config_lib.TrainConfig,
    input_context: tf.distribute.InputContext | None,
    batch: int,
) -> tf.data.Dataset:
    """Random crops (and JPEG re-compressions) of the numbered examples, in full batches."""
    pipeline_id = input_context.input_pipeline_id if input_context else 0

    def parse_train(index, example):
        # The host keeps only what needs the JPEG codec; flip, colour jitter and blur
        # run on the accelerator in the training step (trainer.training.augment).
        seed = element_seed(config.seed, pipeline_id, index)
        crop_seed, jpeg_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = random_resized_crop(
            example[schema.IMAGE], config.image_size, config.min_crop_area, crop_seed
        )
        if config.jpeg_quality_min:
            image = recompress_jpeg(image, config.jpeg_quality_min, jpeg_seed)
        return image, _label(example)

    dataset = numbered.map(parse_train, **_map_options(config))
    return dataset.batch(batch, drop_remainder=True).prefetch(AUTOTUNE)


def build_synthetic_dataset(
    config: config_lib.TrainConfig, input_context: tf.distribute.InputContext | None = None
) -> tf.data.Dataset:
    """Random in-memory batches with the real pipeline's shapes and dtypes, repeated forever.

    Measures the model without the input pipeline (benchmarks, smoke tests).
    """
    batch = per_replica_batch(config, input_context)
    generator = tf.random.Generator.from_seed(config.seed)
    images = tf.cast(
        generator.uniform([batch, config.image_size, config.image_size, 3], 0, 256, tf.int32),
        tf.uint8,
    )
    labels = tf.cast(generator.uniform([batch, 1], 0, 2, tf.int32), tf.float32)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat()
    return dataset.with_options(_options(config)).prefetch(AUTOTUNE)
