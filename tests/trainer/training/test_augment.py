"""training.augment: the batched augmentation of the training step, against the host version.

The step's flip/jitter/blur replaced per-image ops in the tf.data map; these
tests hold it to the same distribution (statistics of a fixed batch, both
paths), to its seed, to MirroredStrategy and mixed precision, and keep it out
of every saved model.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tests.trainer import tiny_data
from trainer import model as model_lib
from trainer.training import augment, callbacks, input_pipeline
from trainer.training import config as config_lib

SIZE = 48


def _config(**overrides):
    values = dict(data_dir="/unused", model_dir="/unused", image_size=SIZE, weights="none")
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _images(count: int) -> tf.Tensor:
    return tf.stack(
        [
            tf.io.decode_jpeg(tiny_data.jpeg_bytes(i % 2, i, size=SIZE), channels=3)
            for i in range(count)
        ]
    )


def test_batched_ops_equal_the_tf_image_ops_they_replace():
    x = tf.random.stateless_uniform([4, 16, 16, 3], [1, 2])
    factors = tf.constant([0.5, 0.9, 1.1, 1.7])
    # In range and out of range (brightness/contrast run before the clip, as on the host).
    for images in (x, x * 1.4 - 0.2):
        expected = tf.stack([tf.image.adjust_saturation(images[i], factors[i]) for i in range(4)])
        np.testing.assert_allclose(augment.adjust_saturation(images, factors), expected, atol=1e-5)
    sigmas = tf.constant([0.1, 0.8, 1.2, 1.5])
    expected = tf.stack([augment.reference_gaussian_blur(x[i], sigmas[i]) for i in range(4)])
    np.testing.assert_allclose(augment.gaussian_blur_batch(x, sigmas), expected, atol=1e-5)


def test_same_seed_same_batch_and_each_step_and_replica_its_own_draws():
    spec = augment.StepAugmentation(flip=True, color_jitter=0.2, blur_probability=0.5)
    images = _images(8)
    first = augment.augment_batch(images, augment.step_seed(42, 3, 0), spec)
    assert first.dtype == tf.uint8 and first.shape == images.shape
    np.testing.assert_array_equal(
        first, augment.augment_batch(images, augment.step_seed(42, 3, 0), spec)
    )
    for other in (augment.step_seed(43, 3, 0), augment.step_seed(42, 4, 0)):
        assert not np.array_equal(first, augment.augment_batch(images, other, spec))
    assert not np.array_equal(
        first, augment.augment_batch(images, augment.step_seed(42, 3, 1), spec)
    )
    # Nothing asked for: the batch passes untouched.
    np.testing.assert_array_equal(
        augment.augment_batch(images, augment.step_seed(42, 3), augment.StepAugmentation()), images
    )


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(a), np.sort(b)
    values = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, values, side="right") / len(a)
    cdf_b = np.searchsorted(b, values, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def _statistics(batch: np.ndarray) -> dict:
    """Per-image brightness, RMS contrast, high-frequency energy, colourfulness."""
    x = batch.astype(np.float32) / 255.0
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    high = np.mean(np.diff(luma, axis=1) ** 2, axis=(1, 2)) + np.mean(
        np.diff(luma, axis=2) ** 2, axis=(1, 2)
    )
    return {
        "mean": x.mean(axis=(1, 2, 3)),
        "contrast": luma.std(axis=(1, 2)),
        "high_frequency": high,
        "saturation": (x.max(-1) - x.min(-1)).mean(axis=(1, 2)),
    }


def _host_path(images, config, repeats):
    """The former pipeline: every augmentation per image in the tf.data map."""
    tf.random.set_seed(0)
    dataset = (
        tf.data.Dataset.from_tensor_slices(images)
        .repeat(repeats)
        .map(lambda x: augment.reference_augment_image(x, config))
    )
    return np.stack([x.numpy() for x in dataset])


def _split_path(images, config, repeats, seed=7):
    """Today's: JPEG re-compression on the host (`data`), the rest in the step (`augment`)."""
    spec = augment.StepAugmentation.from_config(config)
    host = tf.data.Dataset.from_tensor_slices(images).repeat(repeats).enumerate()
    if config.jpeg_quality_min:
        host = host.map(
            lambda i, x: input_pipeline.recompress_jpeg(
                x, config.jpeg_quality_min, input_pipeline.element_seed(seed, 0, i)
            )
        )
    else:
        host = host.map(lambda i, x: x)
    step = tf.function(lambda b, s: augment.augment_batch(b, augment.step_seed(seed, s), spec))
    batches = host.batch(int(images.shape[0]))
    return np.concatenate(
        [step(b, tf.constant(s, tf.int64)).numpy() for s, b in enumerate(batches)]
    )


def test_step_augmentation_has_the_host_augmentations_distribution():
    """KS tests per statistic over 256 augmented images (32 images x 8 draws) per path.

    A strong recipe (more jitter, blur and compression than the 140k flagfiles) so
    that a real difference would show; critical value at alpha = 0.01 for two samples
    of 256 is 1.63 * sqrt(2 / 256) = 0.144. The same test must notice halved
    jitter and blur (its power), or passing would mean nothing.
    """
    config = _config(jpeg_quality_min=30, blur_probability=0.5, color_jitter=0.3)
    images, repeats, critical = _images(32), 8, 0.144
    host = _statistics(_host_path(images, config, repeats))
    split = _statistics(_split_path(images, config, repeats))
    distances = {k: _ks(host[k], split[k]) for k in host}
    assert max(distances.values()) < critical, distances
    weaker = dataclasses.replace(config, color_jitter=0.15, blur_probability=0.25)
    weaker_stats = _statistics(_split_path(images, weaker, repeats))
    assert max(_ks(host[k], weaker_stats[k]) for k in host) > critical


def test_host_part_is_reproducible_from_the_seed():
    jpeg = tf.constant(tiny_data.jpeg_bytes(1, 0, size=SIZE))
    crops = [
        input_pipeline.random_resized_crop(jpeg, 32, 0.25, input_pipeline.element_seed(s, 0, 5))
        for s in (1, 1, 2)
    ]
    np.testing.assert_array_equal(crops[0], crops[1])
    assert not np.array_equal(crops[0], crops[2])
    image = crops[0]
    seeds = [input_pipeline.element_seed(1, 0, i) for i in range(16)]
    outs = [input_pipeline.recompress_jpeg(image, 20, s).numpy() for s in seeds]
    again = [input_pipeline.recompress_jpeg(image, 20, s).numpy() for s in seeds]
    np.testing.assert_array_equal(outs, again)
    changed = [not np.array_equal(o, image) for o in outs]
    assert 0 < sum(changed) < 16  # About half re-compressed.


def test_resumed_pipeline_draws_the_same_crops_and_recompression(tmp_path):
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=12, validation=2, test=2)
    config = _config(
        data_dir=data_dir,
        image_size=32,
        global_batch_size=4,
        shuffle_buffer=8,
        deterministic=True,
        jpeg_quality_min=20,
    )

    def images(first_step):
        stream = input_pipeline.build_dataset(
            "train",
            config,
            training=True,
            epochs=range(1, 3),
            steps_per_epoch=3,
            first_step=first_step,
        )
        return [batch[0].numpy() for batch in stream]

    full, resumed = images(0), images(2)
    assert len(resumed) == 4
    np.testing.assert_array_equal(np.stack(full[2:]), np.stack(resumed))


def test_reference_host_augmentation_keeps_shape_and_changes_pixels():
    config = _config(jpeg_quality_min=10, blur_probability=0.99, color_jitter=0.5, flip=False)
    image = _images(1)[0]
    out = tf.function(lambda x: augment.reference_augment_image(x, config))(image)
    assert out.dtype == tf.uint8 and out.shape == image.shape
    assert np.abs(out.numpy().astype(int) - image.numpy().astype(int)).mean() > 1


def _tiny_classifier(size=SIZE):
    images = keras.Input((size, size, 3), dtype="uint8", name="images")
    x = model_lib.ImagePreprocessing("tf", name="preprocessing")(images)
    x = keras.layers.Conv2D(4, 3, strides=4, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(1, dtype="float32", name=model_lib.LOGIT_LAYER)(x)
    return keras.Model(images, logits, name="tiny")


def test_augmentation_is_absent_from_saved_and_inference_models(tmp_path):
    model = _tiny_classifier()
    assert augment.training_model(model, _config(flip=False)) is model  # Nothing to do.
    fit_model = augment.training_model(model, _config(color_jitter=0.1, blur_probability=0.1))
    assert isinstance(fit_model, augment.AugmentedModel)
    assert fit_model.input is model.input and fit_model.output is model.output
    assert [w.path for w in fit_model.weights] == [w.path for w in model.weights]
    path = str(tmp_path / "best.keras")
    callbacks.inference_model(fit_model).save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    assert [type(layer).__name__ for layer in loaded.layers] == [
        type(layer).__name__ for layer in model.layers
    ]
    images = _images(4)
    # Same weights, same ops; eager calls and predict's compiled graph may round differently
    # (oneDNN picks kernels per path), hence a float32-rounding tolerance, not equality.
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-6)
    # Evaluation and prediction see the images untouched.
    np.testing.assert_allclose(
        fit_model.predict(images, verbose=0), model(images), rtol=1e-5, atol=1e-6
    )


def _fit_weights(strategy, config, images, labels, initial):
    with strategy.scope():
        model = _tiny_classifier()
        model.set_weights(initial)
        fit_model = augment.training_model(model, config)
        fit_model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss=keras.losses.BinaryCrossentropy(from_logits=True),
        )
    history = fit_model.fit(images, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"]


def test_trains_reproducibly_under_mirrored_strategy_and_mixed_precision():
    """mixed_float16 (loss scaling, the harder case); the augmentation itself computes in
    float32 on uint8 whatever the policy, so bfloat16 takes the same path."""
    images = _images(8).numpy()
    labels = (np.arange(8) % 2).astype(np.float32).reshape(-1, 1)
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    )
    config = _config(color_jitter=0.3, blur_probability=0.5)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        initial = _tiny_classifier().get_weights()
        first, loss = _fit_weights(strategy, config, images, labels, initial)
        again, _ = _fit_weights(strategy, config, images, labels, initial)
        other, _ = _fit_weights(
            strategy, dataclasses.replace(config, seed=7), images, labels, initial
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert all(np.isfinite(w).all() for w in first) and np.isfinite(loss).all()
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))

    # Each replica draws its own parameters from the same seed and step.
    spec = augment.StepAugmentation.from_config(config)
    same = tf.constant(images[:2])
    per_replica = strategy.run(
        tf.function(
            lambda x: augment.augment_batch(
                x, augment.step_seed(42, 0, augment._replica_id()), spec
            )
        ),
        args=(same,),
    )
    replica_0, replica_1 = strategy.experimental_local_results(per_replica)
    assert not np.array_equal(replica_0, replica_1)
