"""trainer.data: the TFDS pipeline, eagerly and under a distribution strategy."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import schema
from tests.trainer import tiny_data
from trainer import data, export
from trainer.training import config as config_lib
from trainer.training import input_pipeline


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data.write(str(tmp_path_factory.mktemp("tfds")), train=24, validation=10, test=4)


def _config(data_dir, **overrides):
    values = dict(
        data_dir=data_dir,
        model_dir="/unused",
        image_size=32,
        global_batch_size=4,
        shuffle_buffer=8,
        weights="none",
    )
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def test_training_batches_have_the_model_input_contract(data_dir):
    config = _config(data_dir, jpeg_quality_min=50, blur_probability=0.5, color_jitter=0.2)
    dataset = input_pipeline.build_dataset(
        "train", config, training=True, epochs=range(2), steps_per_epoch=3
    )
    batches = list(dataset)
    assert len(batches) == 6  # Exactly epochs x steps_per_epoch: nothing more, nothing less.
    images, labels = batches[0]
    assert images.dtype == tf.uint8 and images.shape == (4, 32, 32, 3)
    assert labels.dtype == tf.float32 and labels.shape == (4, 1)
    all_labels = np.concatenate([b[1].numpy().ravel() for b in batches])
    assert set(all_labels) <= {0.0, 1.0} and 0 < all_labels.mean() < 1


def test_evaluation_pixels_are_the_exports_pixels(data_dir):
    config = _config(data_dir)
    builder = data.load_builder(data_dir)
    images, labels, weights = next(
        iter(input_pipeline.build_dataset("validation", config, training=False))
    )
    assert np.all(weights.numpy() == 1.0)
    raw = builder.as_dataset(
        "validation", shuffle_files=False, decoders={schema.IMAGE: tfds.decode.SkipDecoding()}
    )
    first = next(iter(raw))
    np.testing.assert_array_equal(
        images[0].numpy(), export.decode_for_eval(first[schema.IMAGE], 32).numpy()
    )
    assert labels[0, 0].numpy() == first[schema.LABEL].numpy()
    assert (
        sum(
            int(b[0].shape[0])
            for b in input_pipeline.build_dataset("validation", config, training=False)
        )
        == 10
    )  # One full pass, last batch partial.


def test_resumed_stream_continues_exactly_where_the_killed_one_stopped(data_dir):
    config = _config(data_dir, deterministic=True)
    full = [
        b[1].numpy()
        for b in input_pipeline.build_dataset(
            "train", config, training=True, epochs=range(1, 3), steps_per_epoch=3
        )
    ]
    # A run killed after 2 steps of epoch 1 restarts at epoch 1, step 2.
    resumed = [
        b[1].numpy()
        for b in input_pipeline.build_dataset(
            "train", config, training=True, epochs=range(1, 3), steps_per_epoch=3, first_step=2
        )
    ]
    assert len(resumed) == 4
    for expected, got in zip(full[2:], resumed):
        np.testing.assert_array_equal(expected, got)
    # Each epoch has its own order, independent of where the stream started.
    alone = [
        b[1].numpy()
        for b in input_pipeline.build_dataset(
            "train", config, training=True, epochs=range(2, 3), steps_per_epoch=3
        )
    ]
    for expected, got in zip(full[3:], alone):
        np.testing.assert_array_equal(expected, got)


def test_random_resized_crop_decodes_only_the_window():
    jpeg = tf.constant(tiny_data.jpeg_bytes(1, 0, size=48))
    crops = [input_pipeline.random_resized_crop(jpeg, 24, 0.25) for _ in range(3)]
    assert all(c.dtype == tf.uint8 and c.shape == (24, 24, 3) for c in crops)
    # In tf.data too (graph mode), as the pipeline runs it.
    ds = tf.data.Dataset.from_tensors(jpeg).map(
        lambda j: input_pipeline.random_resized_crop(j, 24, 1.0)
    )
    full_area = next(iter(ds)).numpy()
    # area_range (1, 1) keeps the whole image: the same pixels as a full decode + resize.
    resized = tf.image.resize(tf.io.decode_jpeg(jpeg, channels=3), [24, 24], method="bilinear")
    expected = tf.cast(tf.clip_by_value(resized, 0, 255), tf.uint8).numpy()
    np.testing.assert_array_equal(full_area, expected)


def test_per_replica_batches_under_mirrored_strategy(data_dir):
    strategy = tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")[:2]]
    )
    config = _config(data_dir)
    dist = strategy.distribute_datasets_from_function(
        lambda context: input_pipeline.build_dataset(
            "train", config, context, training=True, epochs=range(1), steps_per_epoch=2
        )
    )
    images, _ = next(iter(dist))
    per_replica = strategy.experimental_local_results(images)
    assert [p.shape[0] for p in per_replica] == [2, 2]


def test_fewer_shards_than_pipelines_shards_by_example(data_dir):
    config = _config(data_dir, global_batch_size=3)
    seen = []
    for pipeline in range(3):  # 3 pipelines, 2 shards: falls back to example sharding.
        context = tf.distribute.InputContext(
            num_input_pipelines=3, input_pipeline_id=pipeline, num_replicas_in_sync=3
        )
        eval_ds = input_pipeline.build_dataset("validation", config, context, training=False)
        seen += [int(b[0].shape[0]) for b in eval_ds]
    assert sum(seen) == 10


def test_synthetic_dataset_matches_real_shapes():
    config = _config("/unused")
    images, labels = next(iter(input_pipeline.build_synthetic_dataset(config)))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.uint8
    assert labels.shape == (4, 1) and labels.dtype == tf.float32


def test_missing_or_half_built_dataset_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="dfd-build-dataset") as error:
        data.load_builder(str(tmp_path / "nothing"))
    # TFDS's own message lists every dataset it knows (~1,400 lines): not repeated.
    assert "\n" not in str(error.value) and len(str(error.value)) < 800
    # A killed build leaves only an incomplete.* folder (config folders included): say so,
    # with the build's own wording (preprocessing.building.dataset_dirs.explain_unprepared).
    half = tmp_path / "half" / "real_and_fake_faces" / "keep_duplicates" / "incomplete.ABC_1.1.0"
    half.mkdir(parents=True)
    left = r"unfinished build left \(incomplete\.ABC"
    with pytest.raises(FileNotFoundError, match=left) as error:
        data.load_builder(str(tmp_path / "half"))
    assert "\n" not in str(error.value) and "dfd-build-dataset" in str(error.value)


def test_padded_evaluation_gives_every_replica_full_batches(data_dir):
    """Issue 14: every pipeline yields the same number of full batches; padding weighs 0."""
    config = _config(data_dir, global_batch_size=12)
    builder = data.load_builder(data_dir)
    assert input_pipeline.pipeline_example_counts(builder, "validation", 2) == [
        5,
        5,
    ]  # 2 shards of 5.
    assert input_pipeline.pipeline_example_counts(builder, "validation", 3) == [
        4,
        3,
        3,
    ]  # By example.
    for pipelines in (1, 2, 3):
        steps = input_pipeline.eval_steps(builder, "validation", config, pipelines)
        total = 0.0
        for pipeline in range(pipelines):
            context = tf.distribute.InputContext(pipelines, pipeline, 2 * pipelines)
            batches = list(
                input_pipeline.build_dataset(
                    "validation", config, context, training=False, eval_steps=steps
                )
            )
            assert len(batches) == 2 * steps  # Two replicas per pipeline, each a full batch.
            assert all(b[0].shape[0] == 12 // (2 * pipelines) for b in batches)
            total += sum(float(b[2].numpy().sum()) for b in batches)
        assert total == 10  # Every example once, whatever the pipeline count.


def test_corrupted_shard_is_found_and_named(tmp_path):
    data_dir = tiny_data.write(str(tmp_path / "tfds"), train=4, validation=4, test=2, size=32)
    builder = data.load_builder(data_dir)
    assert data.find_corrupted_shards(builder, ["train", "validation"]) == []
    shard = sorted((tmp_path / "tfds").rglob("*-validation.tfrecord-00001-of-*"))[0]
    shard.write_bytes(shard.read_bytes()[:-10])  # Truncated: the last record is cut.
    problems = data.find_corrupted_shards(builder, ["train", "validation"])
    assert len(problems) == 1 and problems[0].startswith(str(shard))


def test_cache_keeps_epochs_exact(data_dir):
    config = _config(data_dir, cache=True)
    batches = list(
        input_pipeline.build_dataset(
            "train", config, training=True, epochs=range(3), steps_per_epoch=4
        )
    )
    assert len(batches) == 12
