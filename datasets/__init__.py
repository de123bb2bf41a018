"""TFDS builders of this project; importing the package registers them with tfds.

        import datasets  # registers mosi, mosei, sims, synthetic
        builder = tfds.builder("mosi/unaligned_50", data_dir=...)

Only `tensorflow_datasets` and numpy are imported here; the MMSA loader is imported
when a dataset is built.
"""

from datasets.mosei import Mosei
from datasets.mosi import Mosi
from datasets.sims import Sims
from datasets.synthetic import Synthetic

__all__ = ["Mosei", "Mosi", "Sims", "Synthetic"]
