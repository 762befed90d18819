"""real_and_fake_faces: real (FFHQ) and StyleGAN-generated face photos, as TFDS.

Build it with the launcher (`python -m preprocessing.build`), with
`tfds build tfds_builder/real_and_fake_faces --manual_dir=... --data_dir=...`, or
with `tfds.builder("real_and_fake_faces", ...).download_and_prepare(...)`; all
three run the same Beam pipeline from `preprocessing/`. Besides the TFRecord
shards, the version folder gets `rejects.jsonl` (every input not written, and
why) and `build_summary.json` (counts per split and label).
"""

from __future__ import annotations

import os

import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import paths, report, schema, sources

_LEDGER_FOLDER = "_ledger"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for real_and_fake_faces (Beam-based, manual download)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: Kaggle layout or <split>/{real,fake}/ trees, CSV "
        "reconciliation, normalised JPEGs, SHA-256 leakage check, rejects.jsonl.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download "140k Real and Fake Faces" from
    https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces (a Kaggle
    account is needed) and put either the zip or its extracted content
    (real_vs_fake/ and train.csv, valid.csv, test.csv) in `manual_dir`. Any
    <split>/{real,fake}/ tree (split: train, valid or validation, test) works too,
    e.g. what `python -m preprocessing.synthetic` writes.
    """

    def __init__(
        self, *, duplicates: str = "keep", max_reject_fraction: float | None = None, **kwargs
    ):
        """Args beyond TFDS' own:

        duplicates: "keep" or "drop" inputs whose bytes also occur in an earlier
            split (train < validation < test); either way they are reported.
        max_reject_fraction: fail the build when a larger fraction of inputs is
            rejected for bad input; None: never fail for rejects.
        """
        if duplicates not in ("keep", "drop"):
            raise ValueError(f"duplicates={duplicates!r} is not 'keep' or 'drop'.")
        if max_reject_fraction is not None and not 0.0 <= max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction={max_reject_fraction} is not in [0, 1].")
        self._duplicates = duplicates
        self._max_reject_fraction = max_reject_fraction
        self._final_data_dir = None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=schema.features(),
            supervised_keys=(schema.IMAGE, schema.LABEL),
            homepage="https://www.kaggle.com/datasets/xhlulu/140k-real-and-fake-faces",
        )

    def download_and_prepare(self, *args, download_config=None, **kwargs):
        """Picks the local Beam runner when none was asked for; remembers the final folder.

        Without a runner, Beam's DirectRunner would first try to download Prism
        (see preprocessing/runners.py); a build should not depend on that.
        """
        from preprocessing import runners  # Lazy: imports apache_beam.

        download_config = download_config or tfds.download.DownloadConfig()
        if download_config.beam_runner is None and not runners.has_runner(
            download_config.beam_options
        ):
            options = download_config.beam_options
            # Options the user spelled out, even when equal to Beam's defaults
            # (e.g. `tfds build --beam_pipeline_options=direct_running_mode=in_memory`).
            given = " ".join(getattr(options, "_flags", None) or []) if options else ""
            explicit = options.get_all_options() if options else {}
            explicit = {key: value for key, value in explicit.items() if f"--{key}" in given}
            download_config.beam_runner, download_config.beam_options = runners.local_runner(
                num_workers=explicit.get("direct_num_workers"),
                running_mode=explicit.get("direct_running_mode", "multi_processing"),
                options=options,
            )
        self._final_data_dir = self.data_dir
        return super().download_and_prepare(*args, download_config=download_config, **kwargs)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager, pipeline):
        from preprocessing import transforms  # Lazy: imports apache_beam.

        manual_dir = os.fspath(dl_manager.manual_dir)
        layout = sources.find_layout(manual_dir)
        if layout.image_root is None:
            extracted = os.fspath(dl_manager.extract(layout.zip_path))
            layout = sources.find_layout(extracted)
            if layout.image_root is None:
                raise ValueError(
                    f"{layout.zip_path} holds no real_vs_fake/ folders once extracted "
                    f"to {extracted}; is it the Kaggle download?"
                )
        source_files = sources.list_sources(layout)
        if not source_files:
            raise ValueError(f"No input images under {layout.image_root}.")
        work_dir = paths.join(self.data_dir, _LEDGER_FOLDER)
        tf.io.gfile.makedirs(work_dir)
        input_list = sources.write_source_list(paths.join(work_dir, "inputs.jsonl"), source_files)
        built = (
            pipeline
            | "ReadInputList" >> transforms.ReadSourceList(input_list)
            | "RealAndFakeFaces" >> transforms.BuildExamples(duplicates=self._duplicates)
        )
        _ = built["ledger"] | "WriteLedger" >> transforms.WriteLedger(
            paths.join(work_dir, "ledger")
        )
        splits = [split for split in schema.SPLITS if any(s.split == split for s in source_files)]
        return {
            split: built["examples"] | split >> self._generate_examples(split) for split in splits
        }

    def _generate_examples(self, split: str):
        """The PTransform that selects one split's (id, example) pairs from the shared stage."""
        from preprocessing import transforms  # Lazy: imports apache_beam.

        return transforms.SelectSplit(split)

    def _download_and_prepare(self, dl_manager, download_config):
        """Runs the pipeline, then turns its ledger into rejects.jsonl and the summary."""
        super()._download_and_prepare(dl_manager, download_config)
        ledger_dir = paths.join(self.data_dir, _LEDGER_FOLDER)
        if not tf.io.gfile.exists(ledger_dir):
            return  # max_examples_per_split=0: no pipeline ran.
        summary = report.finalise(paths.join(ledger_dir, "ledger-*.jsonl"), self.data_dir)
        tf.io.gfile.rmtree(ledger_dir)
        try:
            report.check_reject_fraction(
                summary, self._max_reject_fraction, self._failed_rejects_path()
            )
        except report.RejectFractionExceededError:
            # TFDS deletes the unfinished version folder on error: keep the rejects.
            tf.io.gfile.copy(
                paths.join(self.data_dir, report.REJECTS_FILENAME),
                self._failed_rejects_path(),
                overwrite=True,
            )
            raise

    def _failed_rejects_path(self) -> str:
        """Where rejects.jsonl survives a failed build: beside the version folder."""
        final = os.fspath(self._final_data_dir or self.data_dir)
        return f"{final.rstrip('/')}.failed-rejects.jsonl"
