"""What every Beam-built, manually-downloaded dataset of this project does the same way.

`LedgerBuilder` is a TFDS `GeneratorBasedBuilder` that subclasses give three
things: the inputs (`_list_inputs`, a list of `inputs.SourceFile`), the Beam
composite that turns them into examples and ledger records (`_build_examples`),
and the options that change the content (`_content_options`); a builder whose
inputs carry more than `inputs.SourceFile` (the video builder) also overrides
how the input list is read back (`_read_inputs`) and summarised (`_finalise`).
It provides:

- the local Beam runner when none is asked for (not Beam's Prism download);
- a zip as input: extracted once, capped (`max_extract_gb`), streamed, kept for
  rebuilds (`preprocessing.building.archive`);
- staged builds: the new version is built in a staging root beside the current
  one and installed only when complete, so a failed or killed build, with or
  without `--overwrite`, leaves the previous version readable; leftovers of
  killed builds are cleaned up or reported by the next build
  (`preprocessing.building.dataset_dirs`);
- the input fingerprint: an existing version is reused only when it was built
  from the same inputs and options, otherwise the build stops and says what
  differs (`preprocessing.building.fingerprint`);
- the ledger: every input ends as one record, "written" or "rejected" with its
  reason; `rejects.jsonl`, `build_summary.json` and the reject-rate check
  (`preprocessing.building.summary`).

All of it works the same from `tfds build`, `tfds.builder(...).download_and_prepare()`
and the project's launcher (`tfds_builder.build`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging as std_logging
import math
import os

from absl import logging
import apache_beam as beam
import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import cli, paths, schema, tool_logging
from preprocessing.building import archive, dataset_dirs, fingerprint, inputs, ledger
from preprocessing.building import summary as summary_lib

LEDGER_FOLDER = "_ledger"
# The fraction of inputs that may be rejected as bad input before a build fails: the
# builder's own default, so `tfds build` and the TFDS API apply it as the launchers do
# (their --max_reject_fraction flag defaults to it).
DEFAULT_MAX_REJECT_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class BuildOutcome:
    """What `download_and_prepare` did, for the launcher to report.

    Attributes:
        action: "built", "reused" or "reused_unrecorded" (a dataset built before
            fingerprints were recorded).
        dataset_dir: the version folder readers open.
        leftovers: one message per leftover of a killed build handled or found.
        extraction: the zip extraction used, if the input was a zip.
    """

    action: str
    dataset_dir: str
    leftovers: tuple[str, ...] = ()
    extraction: archive.Extraction | None = None


# What TFDS's writer says, inside a Beam worker, about a split of zero examples.
_TFDS_EMPTY_SPLIT = "total number of generated examples is 0"


class _DropEmptySplitRecords(std_logging.Filter):
    """Drops Beam's error records (with their tracebacks) about an empty TFDS split."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return _TFDS_EMPTY_SPLIT not in record.getMessage()


@contextlib.contextmanager
def _empty_split_errors_off_the_console():
    """Keeps Beam's tracebacks for an empty split off the console (the log file keeps them).

    `_explain_empty_split` says it in one line; without this, the workers' error
    records, each with a traceback, reach the console before it (issue 20).
    """
    console = logging.get_absl_handler()
    dropper = _DropEmptySplitRecords()
    console.addFilter(dropper)
    try:
        yield
    finally:
        console.removeFilter(dropper)


def _expand_user_paths(download_dir, download_config):
    """`tfds build` passes path flags as typed: `~` is expanded here, as the launchers do."""
    if download_dir:
        download_dir = cli.expand_user(os.fspath(download_dir))
    if download_config.extract_dir:
        download_config = dataclasses.replace(
            download_config, extract_dir=cli.expand_user(os.fspath(download_config.extract_dir))
        )
    return download_dir, download_config


@contextlib.contextmanager
def _printed_lines_to_log():
    """Sends what the block prints to the log file (details logger), not to stdout."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        for line in printed.getvalue().splitlines():
            if line.strip():
                tool_logging.details().info("tfds: %s", line)


class LedgerBuilder(tfds.core.GeneratorBasedBuilder):
    """Base class; see the module docstring. Subclasses set VERSION, configs and the hooks."""

    # The project's launcher of this dataset (named in messages); subclasses set it.
    LAUNCHER = ""

    def __init__(
        self,
        *,
        max_reject_fraction: float | None = DEFAULT_MAX_REJECT_FRACTION,
        allow_links_outside_input: bool = False,
        max_extract_gb: float = archive.DEFAULT_MAX_EXTRACT_GB,
        worker_log: str | None = None,
        reject_limit_flag: str | None = None,
        **kwargs,
    ):
        """Args beyond TFDS' own:

        max_reject_fraction: fail the build when a larger fraction of inputs is
            rejected for bad input; None: never fail for rejects.
        allow_links_outside_input: follow symbolic links out of manual_dir.
        max_extract_gb: cap on what a zip input may expand to.
        worker_log: local file Beam worker processes append their stderr to.
        reject_limit_flag: the launcher flag that sets max_reject_fraction, for
            the failure message; None (`tfds build`, the TFDS API): the message
            says how to pass max_reject_fraction to the builder instead.
        """
        if max_reject_fraction is not None and not 0.0 <= max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction={max_reject_fraction} is not in [0, 1].")
        if max_extract_gb <= 0:
            raise ValueError(f"max_extract_gb={max_extract_gb} must be positive.")
        self._options = {
            "max_reject_fraction": max_reject_fraction,
            "allow_links_outside_input": allow_links_outside_input,
            "max_extract_gb": max_extract_gb,
            "worker_log": worker_log,
            "reject_limit_flag": reject_limit_flag,
        }
        if kwargs.get("data_dir") is not None:
            # `tfds build` and the API pass `~` on as typed; the launchers expand it already.
            kwargs["data_dir"] = cli.expand_user(os.fspath(kwargs["data_dir"]))
        self._staged_inputs = None  # Set on the staging builder by the outer one.
        self._final_data_dir = None
        self._extraction = None
        self.outcome: BuildOutcome | None = None
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ hooks

    def _list_inputs(self, manual_dir: str) -> list[inputs.SourceFile]:
        """Every input, with split, label and listing problem (see `_extract_zip`)."""
        raise NotImplementedError

    def _build_examples(self):
        """A PTransform: SourceFiles -> {"examples": (split, id, example), "ledger": dicts}."""
        raise NotImplementedError

    def _read_inputs(self, input_list: str):
        """A PTransform: the input list file -> the inputs, spread over the workers."""

        return ledger.ReadSourceList(input_list)

    def _finalise(self, records: list[dict], data_dir: str) -> dict:
        """Writes rejects.jsonl and build_summary.json from the ledger; returns the summary."""
        return summary_lib.finalise_records(records, data_dir)

    def _content_options(self) -> dict:
        """Options that change the examples, recorded in the fingerprint."""
        return {
            "config": self.builder_config.name if self.builder_config else "",
            "allow_links_outside_input": self._options["allow_links_outside_input"],
        }

    # ------------------------------------------------------------ for the hooks

    def _extract_zip(self, zip_path: str) -> str:
        """Extracts the input zip under `<data_dir root>/downloads/extracted/`; its folder."""
        extract_root = paths.join(os.fspath(self.data_dir_root), "downloads", "extracted")
        destination = archive.destination_for(zip_path, extract_root)
        extraction = archive.extract(
            zip_path,
            destination,
            max_bytes=int(self._options["max_extract_gb"] * archive.GB),
        )
        self._extraction = extraction
        if extraction.reused:
            logging.info(
                "Using %s, extracted earlier from %s (%d files, %s).",
                extraction.folder,
                zip_path,
                extraction.files,
                archive.format_size(extraction.bytes),
            )
        else:
            logging.info(
                "Extracted %s: %d files, %s in %s. It stays there so that rebuilds skip "
                "this step; delete it when you no longer need it.",
                zip_path,
                extraction.files,
                archive.format_size(extraction.bytes),
                extraction.folder,
            )
        return extraction.folder

    # ------------------------------------------------------------------ build

    @property
    def _config_dir(self) -> str:
        return os.path.dirname(os.fspath(self.data_dir).rstrip("/"))

    def _manual_dir(self, download_dir, download_config) -> str:
        """manual_dir with `~` expanded (`tfds build` passes it as typed); a zip is accepted."""
        given = os.fspath(download_config.manual_dir) if download_config.manual_dir else ""
        given = cli.expand_user(given)
        if given and tf.io.gfile.exists(given) and not tf.io.gfile.isdir(given):
            return given  # A zip; TFDS' manager accepts only folders.
        manager = tfds.download.DownloadManager(
            download_dir=download_dir or paths.join(os.fspath(self.data_dir_root), "downloads"),
            manual_dir=given or None,
            manual_dir_instructions=self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            dataset_name=self.name,
        )
        return os.fspath(manager.manual_dir)

    def _choose_runner(self, download_config) -> None:
        """The local Beam runner when none was asked for (see preprocessing/building/runners.py)."""
        from preprocessing.building import runners  # pylint: disable=import-outside-toplevel

        if download_config.beam_runner is not None or runners.has_runner(
            download_config.beam_options
        ):
            return
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
            worker_log=self._options["worker_log"],
        )

    def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs):
        """Builds beside the current version and installs the result (module docstring)."""
        download_dir, download_config = _expand_user_paths(
            download_dir, download_config or tfds.download.DownloadConfig()
        )
        if (
            self._staged_inputs is not None  # The staging builder: TFDS' own build.
            or download_config.download_mode == tfds.download.GenerateMode.UPDATE_DATASET_INFO
        ):
            return super().download_and_prepare(
                download_dir=download_dir, download_config=download_config, **kwargs
            )
        final = os.fspath(self.data_dir)
        self._extraction = None
        leftovers = tuple(dataset_dirs.handle_leftovers(self._config_dir, str(self.version)))
        for message in leftovers:
            logging.warning("%s", message)
        manual_dir = self._manual_dir(download_dir, download_config)
        source_files = self._list_inputs(manual_dir)
        if not source_files:
            raise ValueError(f"No inputs found under {manual_dir}.")
        current = self._fingerprint(source_files, manual_dir)
        if dataset_dirs.is_complete(final) and not download_config.download_mode.overwrite_dataset:
            self.outcome = self._reuse(final, current, source_files, manual_dir, leftovers)
            return None
        self._choose_runner(download_config)
        staged_config = dataclasses.replace(
            download_config,
            manual_dir=manual_dir,
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS,
        )
        self._build_and_install(final, source_files, current, download_dir, staged_config, **kwargs)
        self.info.read_from_directory(final)
        self.outcome = BuildOutcome("built", final, leftovers, self._extraction)
        return None

    def _fingerprint(self, source_files, manual_dir: str) -> fingerprint.Fingerprint:
        """The record of these inputs and this builder's content options."""
        return fingerprint.make(
            source_files,
            builder=f"{self.name}/{self.builder_config.name}:{self.version}"
            if self.builder_config
            else f"{self.name}:{self.version}",
            options=self._content_options(),
            manual_dir=manual_dir,
        )

    def _reuse(self, final: str, current, source_files, manual_dir: str, leftovers) -> BuildOutcome:
        """The outcome of keeping the complete version at `final`.

        Raises:
            fingerprint.InputsChangedError: it was built from other inputs or options.
        """
        status, found = fingerprint.check(final, current, source_files)
        if status == "different":
            raise fingerprint.changed_error(final, found)
        if status == "unrecorded":
            logging.warning(
                "Reusing %s, built before inputs were recorded: whether it matches %s is "
                "unknown. Pass --overwrite to rebuild it with a record.",
                final,
                manual_dir,
            )
        else:
            logging.info("Reusing %s: built from the same inputs and options.", final)
        return BuildOutcome(
            "reused" if status == "same" else "reused_unrecorded",
            final,
            leftovers,
            self._extraction,
        )

    def _build_and_install(
        self, final: str, source_files, current, download_dir, staged_config, **kwargs
    ) -> None:
        """Builds in a new staging root, installs the result at `final`, removes the root."""
        staging = dataset_dirs.start_staging(self._config_dir)
        try:
            staged = self._staging_builder(staging, source_files, current, final)
            with _printed_lines_to_log():  # TFDS prints the staging path: log it, do not show it.
                staged.download_and_prepare(
                    download_dir=download_dir, download_config=staged_config, **kwargs
                )
            dataset_dirs.install(os.fspath(staged.data_dir), final)
            self._record_default_config()
        finally:
            if tf.io.gfile.exists(staging):
                tf.io.gfile.rmtree(staging)

    def _staging_builder(self, staging_root: str, source_files, current, final: str):
        """The same builder writing under `staging_root`, with the inputs listed already."""
        options = dict(self._options)
        staged = type(self)(
            data_dir=staging_root,
            config=self.builder_config,
            version=str(self.version),
            **options,
        )
        staged._staged_inputs = (source_files, current)  # pylint: disable=protected-access
        staged._final_data_dir = final  # pylint: disable=protected-access
        return staged

    def _record_default_config(self) -> None:
        """`<name>/.config/metadata.json`: what `tfds.builder(name)` opens without this code.

        TFDS writes it next to the version it builds, which is inside the staging
        root here; readers that have only the files need it beside the configs.
        """
        if not self.BUILDER_CONFIGS:
            return
        folder = paths.join(os.path.dirname(self._config_dir), ".config")
        tf.io.gfile.makedirs(folder)
        with tf.io.gfile.GFile(paths.join(folder, "metadata.json"), "w") as f:
            f.write(json.dumps({"default_config_name": self.get_default_builder_config().name}))

    # ------------------------------------------------------- inside the staging

    def _split_generators(self, dl_manager, pipeline):
        del dl_manager  # The inputs were listed (and any zip extracted) by the outer builder.

        source_files, _ = self._staged_inputs
        work_dir = paths.join(os.fspath(self.data_dir), LEDGER_FOLDER)
        tf.io.gfile.makedirs(work_dir)
        input_list = inputs.write_source_list(paths.join(work_dir, "inputs.jsonl"), source_files)
        built = (
            pipeline
            | "ReadInputList" >> self._read_inputs(input_list)
            | "BuildExamples" >> self._build_examples()
        )
        written = built["ledger"] | "WriteLedger" >> ledger.WriteLedger(
            paths.join(work_dir, "ledger")
        )
        # TFDS fails the whole job on a split of zero examples; waiting for the ledger
        # first means rejects.jsonl and the summary can still say why (issue 20).
        self._ledger_written = beam.pvalue.AsList(written)
        known = list(schema.SPLITS)
        splits = sorted(
            {source.split for source in source_files},
            key=lambda split: (known.index(split) if split in known else len(known), split),
        )
        return {
            split: built["examples"] | split >> self._generate_examples(split) for split in splits
        }

    def _reject_limit_words(self, fraction: float) -> dict:
        """How the failure message names the reject limit and says how to raise it.

        The launchers have a flag; `tfds build` and the TFDS API have only the
        builder argument, which `tfds build` takes in the dataset name.
        """
        flag = self._options["reject_limit_flag"]
        if flag:
            return {"limit_name": flag, "how_to_raise": f"raise {flag}"}
        value = math.ceil(fraction * 100) / 100
        name = f"{self.name}/{self.builder_config.name}" if self.builder_config else self.name
        return {
            "limit_name": "max_reject_fraction",
            "how_to_raise": (
                f"raise the builder's max_reject_fraction: `{self.LAUNCHER} "
                f'--max_reject_fraction={value} ...`, `tfds.builder("{name}", '
                f"max_reject_fraction={value}, ...)` in Python, or `tfds build {name}/"
                f"max_reject_fraction={value} --imports=tfds_builder.{self.name}."
                f"{self.name}_dataset_builder ...` "
                "(tfds build has no flag for it)"
            ),
        }

    def _generate_examples(self, split: str):
        """The PTransform that selects one split's (id, example) pairs from the shared stage."""

        return ledger.SelectSplit(split, after=getattr(self, "_ledger_written", None))

    def _download_and_prepare(self, dl_manager, download_config):
        """Runs the pipeline, then the ledger becomes rejects.jsonl, the summary, the record."""
        data_dir = os.fspath(self.data_dir)
        ledger_dir = paths.join(data_dir, LEDGER_FOLDER)
        try:
            with _empty_split_errors_off_the_console():
                super()._download_and_prepare(dl_manager, download_config)
        except Exception as error:
            self._explain_empty_split(ledger_dir, data_dir, error)
            raise
        if not tf.io.gfile.exists(ledger_dir):
            return  # max_examples_per_split=0: no pipeline ran.
        records = summary_lib.read_ledger(paths.join(ledger_dir, "ledger-*.jsonl"))
        summary = self._finalise(records, data_dir)
        source_files, current = self._staged_inputs
        fingerprint.write(
            data_dir,
            current,
            source_files,
            {record["id"]: record.get("source_sha256", "") for record in records},
        )
        tf.io.gfile.rmtree(ledger_dir)
        failed_rejects = f"{self._final_data_dir.rstrip('/')}.failed-rejects.jsonl"
        try:
            summary_lib.check_reject_fraction(
                summary,
                self._options["max_reject_fraction"],
                failed_rejects,
                **self._reject_limit_words(summary["total"]["reject_fraction"]),
            )
        except summary_lib.RejectFractionExceededError:
            # The staged build is discarded: keep its rejects beside the version folder.
            tf.io.gfile.copy(
                paths.join(data_dir, summary_lib.REJECTS_FILENAME), failed_rejects, overwrite=True
            )
            raise
        if tf.io.gfile.exists(failed_rejects):
            tf.io.gfile.remove(failed_rejects)  # From an earlier failed build; this one passed.

    def _explain_empty_split(self, ledger_dir: str, data_dir: str, error: Exception) -> None:
        """After a failed job: when a split got no example, keeps the rejects and says so.

        Raises:
            summary_lib.EmptySplitError: a split's inputs were all rejected.
        """
        pattern = paths.join(ledger_dir, "ledger-*.jsonl")
        if not tf.io.gfile.glob(pattern):
            return  # The job failed before its ledger was written: not an empty split.
        records = summary_lib.read_ledger(pattern)
        summary = self._finalise(records, data_dir)
        empty = summary_lib.empty_splits(summary)
        if not empty:
            return
        failed_rejects = f"{self._final_data_dir.rstrip('/')}.failed-rejects.jsonl"
        # The staged build is discarded: keep its rejects and summary beside the version.
        tf.io.gfile.copy(
            paths.join(data_dir, summary_lib.REJECTS_FILENAME), failed_rejects, overwrite=True
        )
        tf.io.gfile.copy(
            paths.join(data_dir, summary_lib.SUMMARY_FILENAME),
            f"{self._final_data_dir.rstrip('/')}.failed-summary.json",
            overwrite=True,
        )
        raise summary_lib.empty_split_error(summary, empty, failed_rejects) from error
