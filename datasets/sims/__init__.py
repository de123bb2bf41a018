"""The `sims` TFDS builder."""

from datasets.sims.sims import Sims
