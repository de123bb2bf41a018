"""The `mosi` TFDS builder."""

from datasets.mosi.mosi import Mosi

__all__ = ["Mosi"]
