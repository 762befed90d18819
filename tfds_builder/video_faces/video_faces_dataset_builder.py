"""video_faces: aligned face crops of frames sampled from real and fake videos, as TFDS.

Build it with the launcher (`dfd-build-video-dataset`, or `python -m
tfds_builder.build_videos`), with `tfds build tfds_builder/video_faces
--config=<layout> --manual_dir=... --data_dir=...`, or with
`tfds.builder("video_faces/<layout>", ...).download_and_prepare(...)`; all run
the same Beam pipeline (`preprocessing.video_faces.transforms`) through
`tfds_builder.beam_builder.LedgerBuilder` (staged builds, input fingerprint,
ledger, rejects.jsonl, build_summary.json).

A second builder rather than a config of `real_and_fake_faces`: the inputs
(videos, not images), the listing (three layouts with split lists), the
pipeline (sampling, detection, tracking) and the features (four more) all
differ; what is shared lives in `beam_builder` and `preprocessing`.

Configs are the input layouts (`preprocessing.video_faces.sources`), each in its own
folder `<data_dir>/video_faces/<layout>/<version>/`, so that FaceForensics++ and
Celeb-DF can be built side by side for cross-dataset evaluation:

- `folders` (default): `<split>/{real,fake}/**/<video>`;
- `faceforensics`: FaceForensics++ (`original_sequences/`, `manipulated_sequences/`,
  optional official `train.json`/`val.json`/`test.json`);
- `celeb_df`: Celeb-DF (`Celeb-real/`, `YouTube-real/`, `Celeb-synthesis/`, optional
  `List_of_testing_videos.txt`).

Sampling and cropping options (`video_transforms.FrameOptions`) and the split
options (`video_sources.SplitOptions`) are builder arguments, recorded in the
build's input fingerprint: a version built with other options is not reused.

Each example is one face crop of one sampled frame with the image dataset's
features (image, label, id, filename, sha256; the trainer reads only image and
label) plus `video_id`, `frame_index`, `track_id` and `source`
(`preprocessing.schema.video_features`).
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from preprocessing import schema
from preprocessing.building import ledger
from preprocessing.video_faces import sources as video_sources
from tfds_builder import beam_builder

DATASET_NAME = "video_faces"


@dataclasses.dataclass(eq=False)
class VideoFacesConfig(tfds.core.BuilderConfig):
    """An input layout; `layout` is what `video_sources.find_video_layout` takes."""

    layout: str = "folders"


CONFIGS = {
    "folders": VideoFacesConfig(
        name="folders",
        description="A <split>/{real,fake}/**/<video> tree; splits from the folders.",
        layout="folders",
    ),
    "faceforensics": VideoFacesConfig(
        name="faceforensics",
        description="FaceForensics++ (one compression); splits from its official pair lists when "
        "supplied, else by a hash of each group of originals and their manipulations.",
        layout="faceforensics",
    ),
    "celeb_df": VideoFacesConfig(
        name="celeb_df",
        description="Celeb-DF; test split from List_of_testing_videos.txt when supplied, the "
        "rest by a hash of each source video.",
        layout="celeb_df",
    ),
}


class Builder(beam_builder.LedgerBuilder):
    """DatasetBuilder for video_faces (Beam-based, manual download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: folders, FaceForensics++ and Celeb-DF layouts; frames sampled "
        "as at inference, faces found with MTCNN and aligned to the canonical template, tracked; "
        "splits by video and source group; rejects.jsonl and videos/faces summary.",
    }
    BUILDER_CONFIGS = list(CONFIGS.values())
    LAUNCHER = "dfd-build-video-dataset"
    DEFAULT_BUILDER_CONFIG_NAME = "folders"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Pass a folder of videos as `manual_dir`: a <split>/{real,fake}/**/<video> tree
    (split: train, valid or validation, test; videos: mp4, m4v, mov, webm, mkv,
    avi), FaceForensics++ as its download script writes it (request access at
    https://github.com/ondyari/FaceForensics; put its train.json, val.json and
    test.json beside it for the official splits), or Celeb-DF (request access at
    https://github.com/yuezunli/celeb-deepfakeforensics; List_of_testing_videos.txt
    gives the official test split). Choose the config of the layout.
    """

    def __init__(
        self,
        *,
        frame_options=None,
        split_options: video_sources.SplitOptions | None = None,
        **kwargs,
    ):
        """Args beyond LedgerBuilder's:

        frame_options: `video_transforms.FrameOptions` (sampling, faces, crop size).
        split_options: `video_sources.SplitOptions` (hash-split fractions, FF++ compression).
        """
        from preprocessing.video_faces import transforms as video_transforms  # pylint: disable=import-outside-toplevel

        frame_options = frame_options or video_transforms.FrameOptions()
        split_options = split_options or video_sources.SplitOptions()
        frame_options.validate()
        split_options.validate()
        super().__init__(**kwargs)
        # In _options, so that the staging builder (made from them) gets them too.
        self._options["frame_options"] = frame_options
        self._options["split_options"] = split_options

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=schema.video_features(),
            supervised_keys=(schema.IMAGE, schema.LABEL),
        )

    def _content_options(self) -> dict:
        return {
            **super()._content_options(),
            **self._options["frame_options"].content(),
            **dataclasses.asdict(self._options["split_options"]),
        }

    def _list_inputs(self, manual_dir: str) -> list[video_sources.VideoSource]:
        layout = video_sources.find_video_layout(manual_dir, self.builder_config.layout)
        return video_sources.list_videos(
            layout,
            self._options["split_options"],
            allow_links_outside=self._options["allow_links_outside_input"],
        )

    def _read_inputs(self, input_list: str):

        return ledger.ReadSourceList(input_list, parse=video_sources.from_json)

    def _build_examples(self):
        from preprocessing.video_faces import transforms as video_transforms  # pylint: disable=import-outside-toplevel

        return video_transforms.BuildVideoExamples(self._options["frame_options"])

    def _finalise(self, records: list[dict], data_dir: str) -> dict:
        from preprocessing.video_faces import summary as video_summary  # pylint: disable=import-outside-toplevel

        return video_summary.finalise_records(records, data_dir)
