"""The `mosei` TFDS builder on dummy MMSA pickles (datasets/mosei/dummy_data/)."""

import tensorflow_datasets as tfds

from datasets.mosei import Mosei


class MoseiTest(tfds.testing.DatasetBuilderTestCase):
    """Builds every config from the dummy `unaligned_50.pkl` / `aligned_50.pkl`."""

    DATASET_CLASS = Mosei
    SPLITS = {"train": 3, "validation": 2, "test": 1}
