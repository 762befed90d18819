"""The builder's declarations: configs per layout, features, options recorded as content.

Not a `tfds.testing.DatasetBuilderTestCase` on dummy_data/: a dummy video needs
a real face, which would mean a photograph in the repository (see README.md).
The build itself, on clips written at test time from scikit-image's photographs,
is tested in tests/tfds_builder/test_video_build.py.
"""

import pytest
import tensorflow_datasets as tfds

from preprocessing import schema
from preprocessing.video_faces import sources as video_sources
from preprocessing.video_faces import transforms as video_transforms
from tfds_builder import beam_builder, build_videos
from tfds_builder.video_faces import video_faces_dataset_builder as vf


def test_one_config_per_layout_and_the_video_features(tmp_path):
    assert sorted(vf.CONFIGS) == sorted(video_sources.LAYOUTS)
    builder = tfds.builder("video_faces/celeb_df", data_dir=str(tmp_path))
    assert isinstance(builder, vf.Builder) and builder.builder_config.layout == "celeb_df"
    assert builder.info.full_name == "video_faces/celeb_df/1.0.0"
    assert builder.info.features.keys() == schema.video_features().keys()
    assert builder.info.supervised_keys == (schema.IMAGE, schema.LABEL)
    assert not builder.is_prepared()
    assert tfds.builder("video_faces", data_dir=str(tmp_path)).builder_config.name == "folders"


def test_options_that_change_the_examples_are_content_and_reach_the_staging_builder(tmp_path):
    frames = video_transforms.FrameOptions(frames_per_video=5, image_size=128, chunk_frames=3)
    splits = video_sources.SplitOptions(validation_fraction=0.2)
    builder = vf.Builder(data_dir=str(tmp_path), frame_options=frames, split_options=splits)
    content = builder._content_options()
    assert (content["frames_per_video"], content["image_size"]) == (5, 128)
    assert content["validation_fraction"] == 0.2 and "chunk_frames" not in content
    staged = builder._staging_builder(str(tmp_path / "staging"), [], None, "final")
    assert staged._content_options() == content
    assert staged._options["frame_options"].chunk_frames == 3
    # The reject limit is the launchers' default whatever the entry point (tfds build, API).
    assert staged._options["max_reject_fraction"] == beam_builder.DEFAULT_MAX_REJECT_FRACTION
    assert build_videos.VideoBuildConfig("in", "out").max_reject_fraction == (
        beam_builder.DEFAULT_MAX_REJECT_FRACTION
    )
    with pytest.raises(ValueError, match="--image_size=0 must be >= 1"):
        vf.Builder(
            data_dir=str(tmp_path), frame_options=video_transforms.FrameOptions(image_size=0)
        )
