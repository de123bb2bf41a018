"""The `mosei` TFDS builder."""

from datasets.mosei.mosei import Mosei

__all__ = ["Mosei"]
