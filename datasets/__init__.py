"""TFDS builders of this project: `mosi`, `mosei`, `sims`, `synthetic`.

Importing the package defines the builder classes (which registers them with `tfds`);
`register()` also makes them openable as MIDG sources (`--source=mosi/unaligned_50`).
The entry points call it: `train.py`, the tests (`tests/conftest.py`) and the benchmarks.
`midg_keras` itself never imports this package.

        import datasets
        datasets.register()
        builder = tfds.builder("mosi/unaligned_50", data_dir=...)

Only `tensorflow_datasets` and numpy are imported here; the MMSA loader is imported
when a dataset is built.
"""

from datasets.mosei import Mosei
from datasets.mosi import Mosi
from datasets.sims import Sims
from datasets.synthetic import Synthetic

__all__ = ["Mosei", "Mosi", "Sims", "Synthetic", "register"]


def register():
    """Registers the four builders as MIDG sources (idempotent)."""
    from midg_keras.data.sources import register_builders

    register_builders(Mosei, Mosi, Sims, Synthetic)
