"""The `sims` TFDS builder."""

from datasets.sims.sims import Sims

__all__ = ["Sims"]
