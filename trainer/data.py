"""The prepared dataset, as every part of the trainer opens it: found, complete, readable.

Training (`trainer.training.input_pipeline`), evaluation and the cross-dataset
matrix open a dataset that `dfd-build-dataset` (or `dfd-build-video-dataset`)
wrote through `load_builder`, which needs only the files, not the builder code,
and fails in one line that names the folder and the fix when the dataset is
missing or half-built. A shard that cannot be read is named by
`find_corrupted_shards` (tf.data's own error names neither file nor split).
"""

from __future__ import annotations

import re

import tensorflow as tf
import tensorflow_datasets as tfds

from preprocessing import cli, paths, schema
from preprocessing.building import dataset_dirs


class CorruptedDataError(ValueError):
    """A TFRecord shard of the prepared dataset cannot be read; the message names the file."""


def load_builder(data_dir: str, dataset: str = schema.DATASET_NAME) -> tfds.core.DatasetBuilder:
    """The TFDS builder of the prepared dataset; needs no builder code, only its files.

    The one "open the prepared dataset" check of the trainer, evaluation and the
    cross-dataset matrix. `dataset` may carry a config and version as TFDS
    spells them (`name/config:1.0.0`).

    Raises:
        FileNotFoundError: one line naming `data_dir`, what was found there (a
            half-built dataset leaves only `incomplete.*` folders) and how to build it.
    """
    name = re.split(r"[/:]", dataset, maxsplit=1)[0]
    fix = (
        f"Fix: build it with `dfd-build-dataset --data_dir={data_dir} ...` (add --overwrite to "
        "replace a half-built one), or point --data_dir at the folder that holds it."
    )
    folder = paths.join(data_dir, name)
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(
            f"No TFDS dataset {dataset!r} under --data_dir={data_dir} (no {folder}). {fix}"
        )
    try:
        builder = tfds.builder(dataset, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, FileNotFoundError, ValueError) as error:
        # TFDS's own message lists every dataset it knows (about 1,400 lines): keep its
        # first line only.
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else repr(error)
        raise _not_built(dataset, data_dir, name, reason, fix) from None
    # When the builder code is imported (registered), tfds.builder succeeds even
    # where nothing was built; only the prepared files make a dataset.
    if not builder.is_prepared():
        raise _not_built(dataset, data_dir, name, f"no {builder.data_dir}", fix)
    return builder


def _not_built(dataset: str, data_dir: str, name: str, detail: str, fix: str) -> FileNotFoundError:
    """The one-line error for a dataset that is not (completely) built under `data_dir`.

    A build that was killed or failed leaves only `incomplete.*` folders; the
    build's own `dataset_dirs.explain_unprepared` recognises them (config
    folders included) and says so.
    """
    half_built = dataset_dirs.explain_unprepared(data_dir, name)
    if half_built:
        return FileNotFoundError(half_built)
    return FileNotFoundError(
        f"TFDS dataset {dataset!r} is not built under --data_dir={data_dir} ({detail}). {fix}"
    )


def find_corrupted_shards(builder: tfds.core.DatasetBuilder, splits) -> list[str]:
    """Shards of `splits` that cannot be read to the end, or hold a different record count.

    tf.data's `DataLossError` ("corrupted record at N") names neither the file
    nor the split; this reads each shard on its own to find which. Each entry
    is "<path> (<reason>)".
    """
    problems = []
    for split in splits:
        info = builder.info.splits[split]
        for path, expected in zip(info.filepaths, info.shard_lengths):
            path = str(path)
            try:
                count = int(
                    tf.data.TFRecordDataset(path).reduce(
                        tf.constant(0, tf.int64), lambda n, _: n + 1
                    )
                )
            except (tf.errors.DataLossError, tf.errors.NotFoundError) as error:
                problems.append(f"{path} ({_one_line(error)})")
                continue
            if count != expected:
                problems.append(f"{path} ({count} records, dataset_info.json says {expected})")
    return problems


def corrupted_data_error(
    builder: tfds.core.DatasetBuilder, splits, error: BaseException
) -> CorruptedDataError:
    """A one-line error naming the damaged shard(s) of `splits` and how to rebuild them."""
    bad = find_corrupted_shards(builder, splits)
    where = (
        f"damaged shard(s): {'; '.join(bad)}"
        if bad
        else f"no shard of {list(splits)} fails when read alone ({_one_line(error)})"
    )
    data_dir = builder.data_dir.split("/" + builder.info.name + "/")[0]
    return CorruptedDataError(
        f"Reading dataset {builder.info.full_name} at {builder.data_dir} failed: {where}. "
        f"Fix: rebuild it with `dfd-build-dataset --data_dir={data_dir} "
        "--overwrite ...` (a copy from gs:// may be re-copied instead); each shard's record count "
        "is listed in dataset_info.json (shardLengths) to verify a copy."
    )


def _one_line(error: BaseException) -> str:
    """`cli.one_line`, cut to 300 characters: it goes inside a longer message."""
    return cli.one_line(error)[:300]


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """Examples in `split`; raises ValueError listing the splits that exist."""
    splits = builder.info.splits
    if split not in splits:
        raise ValueError(
            f"Split {split!r} is not in dataset {builder.info.full_name} at {builder.data_dir}; "
            f"it has {sorted(splits.keys())}."
        )
    return splits[split].num_examples


def num_shards(builder: tfds.core.DatasetBuilder, split: str) -> int:
    """TFRecord files holding `split`."""
    return builder.info.splits[split].num_shards
