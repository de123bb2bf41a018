"""Writes a synthetic domain as an MMSA feature pickle.

        python -m datasets.synthetic --write_pickle /tmp/domain_b.pkl --domain domain_b

The file has the layout of MMSA's `unaligned_50.pkl` (MOSI label scale), so it can be
used anywhere a real file can, e.g. as the source `pickle:/tmp/domain_b.pkl@mosi`.
"""

from absl import app, flags

from datasets.synthetic import generate

_WRITE_PICKLE = flags.DEFINE_string(
    "write_pickle", None, "Path of the MMSA-layout .pkl file to write.", required=True
)
_DOMAIN = flags.DEFINE_enum(
    "domain", "domain_a", list(generate.DOMAINS), "Synthetic domain to write."
)
_SEED = flags.DEFINE_integer(
    "seed", generate.DEFAULT_SEED, "Generator seed (the TFDS builder uses the default)."
)


def main(argv):
    del argv
    path = generate.write_domain_pickle(_WRITE_PICKLE.value, _DOMAIN.value, seed=_SEED.value)
    print(f"wrote {_DOMAIN.value} (seed {_SEED.value}) to {path}")


if __name__ == "__main__":
    app.run(main)
