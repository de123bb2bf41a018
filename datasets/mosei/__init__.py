"""The `mosei` TFDS builder."""

from datasets.mosei.mosei import Mosei
