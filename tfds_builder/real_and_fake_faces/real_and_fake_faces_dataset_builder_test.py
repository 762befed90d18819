"""TFDS' own builder test on dummy_data/ (the Kaggle layout, CSVs included).

dummy_data/ was written by `preprocessing.synthetic.write_dataset(dummy_data, 32,
{"train": 3, "valid": 2, "test": 2}, seed=7)`: 3 + 3 training images, 2 + 2 in
each other split, with Kaggle's `valid` folder and 1 = real CSV labels.

Only the default config is built here (with the default local runner, two
worker processes or more): both configs give the same counts on this data,
which has no duplicates, and tests/preprocessing/test_build.py builds
`drop_duplicates` on data that has.
"""

import tensorflow_datasets as tfds

from tfds_builder.real_and_fake_faces import real_and_fake_faces_dataset_builder


class RealAndFakeFacesTest(tfds.testing.DatasetBuilderTestCase):
    """Builds from dummy_data/ with Beam, reads every split back, checks counts."""

    DATASET_CLASS = real_and_fake_faces_dataset_builder.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["keep_duplicates"]
    SPLITS = {"train": 6, "validation": 4, "test": 4}


if __name__ == "__main__":
    tfds.testing.test_main()
