"""Registers the project's TFDS builders as sources, as train.py does."""

import datasets

datasets.register()
