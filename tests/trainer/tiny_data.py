"""A tiny TFDS dataset in the exact format of the project's builder, for trainer tests.

Written with `tfds.dataset_builders.store_as_tfds_dataset` and the features of
`preprocessing.schema`, under the real builder's default config and version
(`<data_dir>/real_and_fake_faces/keep_duplicates/1.1.0`), so the trainer reads it
through the same `tfds.builder(name, data_dir=...)` call it uses for the real
dataset, whether or not the builder code is imported in the process (once it is,
TFDS looks for exactly that folder). "Fake"
images carry high-frequency noise and "real" ones are smooth gradients: a
model can tell them apart in a few steps, as with the synthetic demo data.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image

from preprocessing import schema


def jpeg_bytes(label: int, index: int, size: int = 48) -> bytes:
    """One RGB JPEG of `size` px: smooth for real (0), noisy for fake (1)."""
    rng = np.random.default_rng(1000 * label + index)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = (ramp[None, :, None] * rng.uniform(0.3, 1.0, 3) + ramp[:, None, None] * 0.3) % 256
    if label == schema.FAKE:
        base = base * 0.5 + rng.uniform(0, 128, (size, size, 3))
    pixels = np.clip(base, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def examples(split: str, count: int, size: int = 48):
    """`count` (key, example) pairs of `split`, alternating real and fake."""
    for index in range(count):
        label = index % 2
        offset = schema.SPLITS.index(split) if split in schema.SPLITS else 3 + len(split)
        data = jpeg_bytes(label, index + 10_000 * offset, size)
        name = f"{split}_{schema.LABEL_NAMES[label]}_{index:04d}.jpg"
        yield (
            index,
            {
                schema.IMAGE: data,
                schema.LABEL: label,
                schema.ID: f"{split}/{schema.LABEL_NAMES[label]}/{name}",
                schema.FILENAME: name,
                schema.SHA256: hashlib.sha256(data).hexdigest(),
            },
        )


def store(data_dir: str, split_datasets: dict, *, num_shards: int, description: str) -> None:
    """Stores {split: [(key, example), ...]} as the project's dataset under `data_dir`."""
    import tensorflow_datasets as tfds

    from tfds_builder.real_and_fake_faces import real_and_fake_faces_dataset_builder as builder

    tfds.dataset_builders.store_as_tfds_dataset(
        name=schema.DATASET_NAME,
        version=str(builder.Builder.VERSION),
        config=builder.Builder.BUILDER_CONFIGS[0].name,
        features=schema.features(),
        split_datasets=split_datasets,
        data_dir=data_dir,
        description=description,
        download_config=tfds.download.DownloadConfig(num_shards=num_shards),
    )


def write(
    data_dir: str,
    *,
    train: int = 32,
    validation: int = 16,
    test: int = 8,
    size: int = 48,
    num_shards: int = 2,
    extra_splits: dict[str, int] | None = None,
) -> str:
    """Writes the dataset under `data_dir`; returns `data_dir`.

    `extra_splits` adds splits of other names ({"four": 4}), e.g. several small
    validation splits in one dataset.
    """
    splits = {"train": train, "validation": validation, "test": test, **(extra_splits or {})}
    store(
        data_dir,
        {split: list(examples(split, count, size)) for split, count in splits.items()},
        num_shards=num_shards,
        description="Tiny test copy of real_and_fake_faces.",
    )
    return data_dir
