"""The `sims` TFDS builder on dummy MMSA pickles (datasets/sims/dummy_data/)."""

import tensorflow_datasets as tfds

from datasets.sims import Sims


class SimsTest(tfds.testing.DatasetBuilderTestCase):
    """Builds every config from the dummy `unaligned_39.pkl`."""

    DATASET_CLASS = Sims
    SPLITS = {"train": 3, "validation": 2, "test": 1}
