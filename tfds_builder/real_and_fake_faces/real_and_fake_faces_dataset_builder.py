"""real_and_fake_faces: real (FFHQ) and StyleGAN-generated face photos, as TFDS.

Build it with the launcher (`dfd-build-dataset`, or `python -m tfds_builder.build`),
with `tfds build tfds_builder/real_and_fake_faces --manual_dir=... --data_dir=...
[--config=drop_duplicates]`, or with `tfds.builder("real_and_fake_faces/<config>",
...).download_and_prepare(...)`; all of them run the same Beam pipeline from
`preprocessing/`, through `tfds_builder.beam_builder.LedgerBuilder` (staged
builds, input fingerprint, ledger). Besides the TFRecord shards, the version
folder gets `rejects.jsonl` (every input not written, and why),
`build_summary.json` (counts per split and label) and the input record
(`build_fingerprint.json`, `build_inputs.jsonl.gz`).

Content variants are builder configs, as in TFDS' own builders, each in its own
folder `<data_dir>/real_and_fake_faces/<config>/<version>/`:

- `keep_duplicates` (the default, what `real_and_fake_faces` opens): byte-identical
  copies across splits are written and reported;
- `drop_duplicates`: copies of an image already in an earlier split (train <
  validation < test) are left out, as `duplicate_across_splits` rejects.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from preprocessing import schema
from preprocessing.building import inputs
from preprocessing.media import images
from preprocessing.real_and_fake_faces import sources
from tfds_builder import beam_builder


@dataclasses.dataclass(eq=False)
class RealAndFakeFacesConfig(tfds.core.BuilderConfig):
    """A content variant; `duplicates` is what `transforms.BuildExamples` takes."""

    duplicates: str = "keep"


CONFIGS = {
    "keep": RealAndFakeFacesConfig(
        name="keep_duplicates",
        description="Every input image; byte-identical copies across splits are reported.",
        duplicates="keep",
    ),
    "drop": RealAndFakeFacesConfig(
        name="drop_duplicates",
        description="Copies of an image already in an earlier split are left out.",
        duplicates="drop",
    ),
}


def config_name(duplicates: str) -> str:
    """The config of a `--duplicates` value: "keep" -> "keep_duplicates"."""
    if duplicates not in CONFIGS:
        raise ValueError(f"--duplicates={duplicates!r} is not one of {sorted(CONFIGS)}.")
    return CONFIGS[duplicates].name


class Builder(beam_builder.LedgerBuilder):
    """DatasetBuilder for real_and_fake_faces (Beam-based, manual download)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: Kaggle layout or <split>/{real,fake}/ trees, CSV "
        "reconciliation, normalised JPEGs, SHA-256 leakage check, rejects.jsonl.",
        "1.1.0": "Configs keep_duplicates (default) and drop_duplicates; JPEGs validated with "
        "TensorFlow's decoder too (tf_decode_failed); bytes after the end-of-image marker "
        "accepted; only regular files read (links out of manual_dir, pipes rejected); "
        "input fingerprint recorded.",
    }
    BUILDER_CONFIGS = list(CONFIGS.values())
    LAUNCHER = "dfd-build-dataset"
    DEFAULT_BUILDER_CONFIG_NAME = CONFIGS["keep"].name
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download "140k Real and Fake Faces" from
    https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces (a Kaggle
    account is needed) and pass the zip itself as `manual_dir`, or the folder
    holding it, or its extracted content (real_vs_fake/ and train.csv,
    valid.csv, test.csv). Any <split>/{real,fake}/ tree (split: train, valid or
    validation, test) works too, e.g. what `python -m preprocessing.synthetic` writes.
    """

    def __init__(self, *, max_file_bytes: int = images.DEFAULT_MAX_FILE_BYTES, **kwargs):
        """`max_file_bytes`: an input file larger than this is rejected (`file_too_large`)
        from its size, unread; the other arguments are `beam_builder.LedgerBuilder`'s."""
        if max_file_bytes < 1:
            raise ValueError(f"max_file_bytes={max_file_bytes} must be >= 1.")
        self._max_file_bytes = max_file_bytes
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=schema.features(),
            supervised_keys=(schema.IMAGE, schema.LABEL),
            homepage="https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces",
        )

    def _list_inputs(self, manual_dir: str) -> list[inputs.SourceFile]:
        layout = sources.find_layout(manual_dir)
        if layout.image_root is None:
            extracted = self._extract_zip(layout.zip_path)
            layout = sources.find_layout(extracted)
            if layout.image_root is None:
                raise ValueError(
                    f"{layout.zip_path} holds no real_vs_fake/ folders once extracted "
                    f"to {extracted}; is it the Kaggle download?"
                )
        return sources.list_sources(
            layout, allow_links_outside=self._options["allow_links_outside_input"]
        )

    def _build_examples(self):
        from preprocessing.real_and_fake_faces import transforms  # Lazy: imports apache_beam.

        return transforms.BuildExamples(
            duplicates=self.builder_config.duplicates, max_file_bytes=self._max_file_bytes
        )
