"""Runner choice, Beam option pass-through, shard sizing and config validation (no pipeline run)."""

from apache_beam.options.pipeline_options import DirectOptions, GoogleCloudOptions, StandardOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
import pytest

from preprocessing import synthetic
from preprocessing.building import runners
from preprocessing.real_and_fake_faces import sources
from tfds_builder import build, launcher


def test_local_runner_is_the_fn_api_runner_with_every_core_by_default():
    runner, options = runners.local_runner()
    direct = options.view_as(DirectOptions)
    assert isinstance(runner, FnApiRunner)
    assert direct.direct_running_mode == "multi_processing"
    assert direct.direct_num_workers == runners.default_num_workers() >= 1


def test_named_runner_passes_options_through_and_rejects_unknown_names():
    runner, options = runners.named_runner(
        "DataflowRunner", launcher.beam_flags(["project=p", "--region=europe-west4"])
    )
    assert runner is None
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).region == "europe-west4"
    assert options.view_as(GoogleCloudOptions).project == "p"
    with pytest.raises(ValueError, match="'Dataflow'.*DataflowRunner"):
        runners.named_runner("Dataflow")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("duplicates", "maybe", "--duplicates='maybe'"),
        ("max_reject_fraction", 1.5, "--max_reject_fraction=1.5"),
        ("running_mode", "threads", "--running_mode='threads'"),
        ("num_workers", -1, "--num_workers=-1"),
    ],
)
def test_bad_config_values_are_named(field, value, message):
    config = build.BuildConfig(manual_dir="in", data_dir="out", **{field: value})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        config.validate()


def test_target_shard_size_sets_a_shard_count_every_split_can_fill(tmp_path):
    synthetic.write_dataset(str(tmp_path), 16, {"train": 20, "valid": 4, "test": 4})
    listed = sources.list_sources(sources.find_layout(str(tmp_path)))
    train_bytes = sum(
        (tmp_path / synthetic.KAGGLE_IMAGE_ROOT / s.id).stat().st_size
        for s in listed
        if s.split == "train"
    )
    assert build._estimate_num_shards(listed, train_bytes * 2) == 1
    assert build._estimate_num_shards(listed, train_bytes / 3) == 3
    # 40 training images, 8 in the smallest split: never more than 8 // 2 shards.
    assert build._estimate_num_shards(listed, train_bytes / 100) == 4
