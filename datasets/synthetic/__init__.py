"""The `synthetic` TFDS builder and its MMSA-layout data generator."""

from datasets.synthetic.synthetic import Synthetic

__all__ = ["Synthetic"]
