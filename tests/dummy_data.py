"""Regenerates the dummy MMSA pickles under `datasets/<builder>/dummy_data/`.

They are the files the `DatasetBuilderTestCase` tests build from: the exact MMSA layout
(`tests/fake_mmsa.py`) with the stock feature dims of each config, but only
3/2/1 clips per split and very short sequences, to keep the repository small.

        python -m tests.dummy_data      # from the repository root
"""

import os

from tests import fake_mmsa

# Clips in train / valid / test: distinct, so a swapped split shows in the test counts.
DUMMY_SIZES = (3, 2, 1)
# builder -> (file name, fake_mmsa layout, padded lengths, seed)
DUMMY_FILES = {
    "mosi": [
        ("unaligned_50.pkl", "mosi_unaligned", {"text": 2, "audio": 4, "vision": 3}, 1),
        ("aligned_50.pkl", "mosi_aligned", {"text": 2}, 2),
    ],
    "mosei": [
        ("unaligned_50.pkl", "mosei_unaligned", {"text": 2, "audio": 3, "vision": 4}, 3),
        ("aligned_50.pkl", "mosei_aligned", {"text": 2}, 4),
    ],
    "sims": [
        ("unaligned_39.pkl", "sims_unaligned", {"text": 2, "audio": 4, "vision": 2}, 5),
    ],
}


DATASETS_ROOT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "datasets"
)


def write_dummy_data(root=DATASETS_ROOT):
    """Writes every dummy pickle under `root/<builder>/dummy_data/`; returns their paths."""
    paths = []
    for builder, files in DUMMY_FILES.items():
        for file_name, layout, lengths, seed in files:
            raw = fake_mmsa.make_fake_mmsa(
                layout,
                sizes=DUMMY_SIZES,
                seed=seed,
                dims=fake_mmsa.STOCK_DIMS[layout],
                lengths=lengths,
            )
            paths.append(
                fake_mmsa.write_pickle(raw, os.path.join(root, builder, "dummy_data", file_name))
            )
    return paths


if __name__ == "__main__":
    for path in write_dummy_data():
        print(path, os.path.getsize(path), "bytes")
