"""Named data sources: `<builder>/<config>` (TFDS) or `pickle:PATH[@family]` (MMSA pickle).

Either way a source becomes unbatched `tf.data` datasets of examples in one contract (see
`EXAMPLE_SIGNATURE`), plus what the pipeline needs to know before it reads any data:
label family, feature dims and maximum sequence lengths.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from midg_keras.data.errors import DataError

SPLITS = ("train", "validation", "test")
MODALITY_KEYS = {"t": "text", "a": "audio", "v": "vision"}
# Labels are divided by the family's maximum so all datasets train on one scale
# (docs/design.md §3.6).
LABEL_SCALE = {"mosi": 3.0, "mosei": 3.0, "sims": 1.0}
# Label family of each TFDS builder; the synthetic data follows MOSI's scale and metrics.
BUILDER_FAMILY = {"mosi": "mosi", "mosei": "mosei", "sims": "sims", "synthetic": "mosi"}


@dataclasses.dataclass
class Source:
    """One dataset, ready for the pipeline.

    Attributes:
        name: the source string as the user gave it.
        family: label family (`mosi`, `mosei` or `sims`): label range, scale and metrics.
        splits: split name -> unbatched dataset of example dicts.
        num_examples: split name -> example count.
        dims: modality key (`text`, `audio`, `vision`) -> feature dim.
        max_lengths: modality key -> longest sequence over all splits.
        fixed_neg_inf: split name -> number of `-inf` audio values mapped to 0.
    """

    name: str
    family: str
    splits: dict[str, tf.data.Dataset]
    num_examples: dict[str, int]
    dims: dict[str, int]
    max_lengths: dict[str, int]
    fixed_neg_inf: dict[str, int]

    @property
    def label_scale(self) -> float:
        return LABEL_SCALE[self.family]


def example_signature(dims, unimodal_labels=False):
    """The `tf.TensorSpec` of one example (the shared data contract)."""
    signature = {
        "id": tf.TensorSpec((), tf.string),
        "raw_text": tf.TensorSpec((), tf.string),
        "label": tf.TensorSpec((), tf.float32),
    }
    for key in MODALITY_KEYS.values():
        signature[key] = tf.TensorSpec((None, dims[key]), tf.float32)
        signature[f"{key}_length"] = tf.TensorSpec((), tf.int32)
    if unimodal_labels:
        for key in ("label_t", "label_a", "label_v"):
            signature[key] = tf.TensorSpec((), tf.float32)
    return signature


def load_source(spec: str, *, data_dir: str = "", manual_dir: str = "", nan_to_num=False) -> Source:
    """Opens a source string; bad strings and bad files raise `DataError`."""
    spec = spec.strip()
    if spec.startswith("pickle:"):
        return _load_pickle_source(spec, nan_to_num)
    return _load_tfds_source(spec, data_dir, manual_dir)


def _load_pickle_source(spec, nan_to_num):
    from midg_keras.data.mmsa import load_mmsa_pickle

    path, at, family = spec[len("pickle:") :].rpartition("@")
    if not at:  # no @family suffix: the whole rest is the path
        path, family = family, "mosi"
    if family not in LABEL_SCALE:
        raise DataError(
            f"unknown label family {family!r} in source {spec!r}",
            fix="write pickle:PATH@mosi, pickle:PATH@mosei or pickle:PATH@sims",
        )
    if not path:
        raise DataError(f"no path in source {spec!r}", fix="write pickle:/path/to/unaligned_50.pkl")
    arrays = load_mmsa_pickle(os.path.expanduser(path), family=family, nan_to_num=nan_to_num)
    first = arrays["train"]
    dims = {key: int(getattr(first, key).shape[-1]) for key in MODALITY_KEYS.values()}
    unimodal = bool(first.unimodal_labels)
    signature = example_signature(dims, unimodal_labels=unimodal)
    splits = {}
    for split in SPLITS:
        # A generator reads the loaded arrays in place: MOSEI-size files are not copied
        # into a second in-memory tensor.
        splits[split] = tf.data.Dataset.from_generator(
            arrays[split].examples, output_signature=signature
        ).apply(tf.data.experimental.assert_cardinality(len(arrays[split].label)))
    return Source(
        name=spec,
        family=family,
        splits=splits,
        num_examples={split: len(arrays[split].label) for split in SPLITS},
        dims=dims,
        max_lengths={
            key: max(int(getattr(arrays[split], f"{key}_length").max()) for split in SPLITS)
            for key in MODALITY_KEYS.values()
        },
        fixed_neg_inf={split: int(arrays[split].fixed_neg_inf) for split in SPLITS},
    )


def _load_tfds_source(spec, data_dir, manual_dir):
    import tensorflow_datasets as tfds

    import datasets as midg_datasets  # noqa: F401  (registers mosi, mosei, sims, synthetic)

    builder_name, _, config_name = spec.partition("/")
    if builder_name not in BUILDER_FAMILY or not config_name:
        raise DataError(
            f"unknown source {spec!r}",
            fix="use <builder>/<config> with builder one of "
            f"{', '.join(sorted(BUILDER_FAMILY))} (e.g. mosi/unaligned_50, synthetic/domain_a), "
            "or pickle:PATH[@mosi|mosei|sims]",
        )
    try:
        builder = tfds.builder(spec, data_dir=data_dir or None)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
        raise DataError(
            f"unknown source {spec!r}: {str(error).splitlines()[0]}",
            fix="check the builder config name (see `datasets/<builder>`)",
        ) from None
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
    builder.download_and_prepare(download_config=download_config)
    features = builder.info.features
    dims = {key: int(features[key].shape[-1]) for key in MODALITY_KEYS.values()}
    splits = {split: builder.as_dataset(split=split, shuffle_files=False) for split in SPLITS}
    metadata = builder.info.metadata or {}
    return Source(
        name=spec,
        family=BUILDER_FAMILY[builder_name],
        splits=splits,
        num_examples={split: builder.info.splits[split].num_examples for split in SPLITS},
        dims=dims,
        max_lengths=_max_lengths(builder, splits),
        fixed_neg_inf={
            split: int(metadata.get("fixed_neg_inf", {}).get(split, 0)) for split in SPLITS
        },
    )


def _max_lengths(builder, splits):
    """Max lengths from the builder's metadata when recorded, else one pass over the lengths."""
    recorded = (builder.info.metadata or {}).get("max_lengths")
    if recorded:
        return {key: int(recorded[key]) for key in MODALITY_KEYS.values()}
    maxima = {key: 0 for key in MODALITY_KEYS.values()}
    for split in SPLITS:
        lengths = splits[split].map(
            lambda ex: tf.stack([ex[f"{key}_length"] for key in MODALITY_KEYS.values()])
        )
        for row in lengths.batch(4096).as_numpy_iterator():
            for i, key in enumerate(MODALITY_KEYS.values()):
                maxima[key] = max(maxima[key], int(row[:, i].max()))
    return maxima


def split_stats(source: Source, split: str) -> dict:
    """Counts, lengths and label range of one split, read from the data (for `inspect`)."""
    keys = list(MODALITY_KEYS.values())
    columns = source.splits[split].map(
        lambda ex: (tf.stack([ex[f"{key}_length"] for key in keys]), ex["label"])
    )
    lengths, labels = [], []
    for length_batch, label_batch in columns.batch(4096).as_numpy_iterator():
        lengths.append(length_batch)
        labels.append(label_batch)
    if not labels:
        return {"examples": 0}
    lengths = np.concatenate(lengths)
    labels = np.concatenate(labels)
    return {
        "examples": int(labels.shape[0]),
        "dims": dict(source.dims),
        "max_lengths": {key: int(lengths[:, i].max()) for i, key in enumerate(keys)},
        "mean_lengths": {key: float(lengths[:, i].mean()) for i, key in enumerate(keys)},
        "label_min": float(labels.min()),
        "label_max": float(labels.max()),
        "label_zero": int((labels == 0).sum()),
        "fixed_neg_inf": source.fixed_neg_inf.get(split, 0),
    }
