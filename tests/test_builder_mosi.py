"""The `mosi` TFDS builder on dummy MMSA pickles (datasets/mosi/dummy_data/)."""

import tensorflow_datasets as tfds

from datasets.mosi import Mosi


class MosiTest(tfds.testing.DatasetBuilderTestCase):
    """Builds both configs from the dummy `unaligned_50.pkl` / `aligned_50.pkl`."""

    DATASET_CLASS = Mosi
    SPLITS = {"train": 3, "validation": 2, "test": 1}
