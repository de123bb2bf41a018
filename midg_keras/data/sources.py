"""Named data sources: `<builder>[/<config>]` (TFDS) or `pickle:PATH[@family]` (MMSA pickle).

`SourceSpec` is the one grammar of a source string (flags, flagfiles, tuner flagfiles and
export all parse it here). `load_source` turns a spec into unbatched `tf.data` datasets of
examples in one contract (see `example_signature`), plus what the pipeline needs to know
before it reads any data: label family, feature dims and maximum sequence lengths.

TFDS builders are looked up in this module's registry, which the top-level `datasets`
package fills (`datasets.register()`, called by the entry points), so this layer never
imports the builders itself. TensorFlow is imported when a source is opened, so the
grammar costs nothing to the flagfile reader.
"""

import dataclasses
import difflib
import os
import re
from collections.abc import Callable

import numpy as np

from midg_keras.constants import BUILDER_FAMILY, LABEL_SCALE, MODALITY_KEYS, SPLITS
from midg_keras.data.checksums import file_sha256
from midg_keras.data.errors import DataError

PICKLE_PREFIX = "pickle:"
# A pickle's label family when the source string names none.
DEFAULT_PICKLE_FAMILY = "mosi"
# What follows the last `@` of a pickle source is a family when it looks like a name;
# otherwise (`pickle:/data/we@ird/x.pkl`) the `@` belongs to the path.
_FAMILY_SUFFIX = re.compile(r"^[A-Za-z0-9_]+$")
_PICKLE_FIX = "write pickle:PATH@mosi, pickle:PATH@mosei or pickle:PATH@sims"

# label.csv `mode` values of rows in no standard fold, skipped by the `label_csv` join
# (MMSA's MOSEI label.csv has 399 rows with mode `none`).
LABEL_CSV_SKIP = ("none",)
# TFDS builder name -> builder class, filled by `register_builders`.
_BUILDERS = {}


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """One parsed source string.

    Attributes:
        builder: TFDS builder name (`mosi`, ...); empty for a pickle.
        config: builder config; empty = the builder's default (as `tfds.load` does).
        path: pickle path; empty for a TFDS source.
        family: label family (`mosi`, `mosei` or `sims`): label range, scale and metrics.
        family_given: the string named the family (`pickle:PATH@family`); kept so that
            `str(spec)` gives back what the user wrote.
    """

    builder: str = ""
    config: str = ""
    path: str = ""
    family: str = DEFAULT_PICKLE_FAMILY
    family_given: bool = False

    @property
    def is_pickle(self) -> bool:
        return not self.builder

    @classmethod
    def parse(cls, text: str, flag: str = "source") -> "SourceSpec":
        """Parses one source; a bad one raises a one-line `DataError` naming `--flag`."""
        text = text.strip()
        if text.startswith(PICKLE_PREFIX):
            return cls._parse_pickle(text, flag)
        builder, _, config = text.partition("/")
        if builder not in BUILDER_FAMILY or "/" in config or text.endswith("/"):
            raise DataError(
                f"--{flag}: unknown source {text!r}",
                fix="use <builder>[/<config>] with builder one of "
                f"{', '.join(sorted(BUILDER_FAMILY))} (e.g. mosi/unaligned_50, synthetic/domain_a; "
                "a bare builder name means its default config), or pickle:PATH[@mosi|mosei|sims]",
            )
        return cls(builder=builder, config=config, family=BUILDER_FAMILY[builder])

    @classmethod
    def _parse_pickle(cls, text, flag):
        rest = text[len(PICKLE_PREFIX) :]
        path, at, family = rest.rpartition("@")
        if not (at and _FAMILY_SUFFIX.match(family)):
            path, family = rest, ""
        if family and family not in LABEL_SCALE:
            raise DataError(
                f"--{flag}: unknown label family {family!r} in source {text!r}", fix=_PICKLE_FIX
            )
        if not path:
            raise DataError(
                f"--{flag}: no path in source {text!r}",
                fix="write pickle:/path/to/unaligned_50.pkl[@mosi|mosei|sims]",
            )
        return cls(path=path, family=family or DEFAULT_PICKLE_FAMILY, family_given=bool(family))

    def __str__(self) -> str:
        if self.is_pickle:
            return f"{PICKLE_PREFIX}{self.path}" + (f"@{self.family}" if self.family_given else "")
        return f"{self.builder}/{self.config}" if self.config else self.builder

    def with_path(self, path: str) -> "SourceSpec":
        """The same source read from `path` (pickles; a TFDS source is returned as is)."""
        return dataclasses.replace(self, path=path) if self.is_pickle else self


def parse_sources(value: str, flag: str = "source") -> list[SourceSpec]:
    """The sources of a comma-separated flag value (empty items are skipped)."""
    return [SourceSpec.parse(item, flag) for item in value.split(",") if item.strip()]


def register_builders(*builder_classes):
    """Makes TFDS builder classes openable as sources by their `name`.

    The top-level `datasets` package calls this from `datasets.register()`; the entry points
    (train.py, the tests, the benchmarks) call that before opening a TFDS source.
    """
    for builder_class in builder_classes:
        if builder_class.name not in BUILDER_FAMILY:
            raise ValueError(
                f"builder {builder_class.name!r} has no label family: add it to "
                "midg_keras.constants.BUILDER_FAMILY"
            )
        _BUILDERS[builder_class.name] = builder_class


@dataclasses.dataclass
class Source:
    """One dataset, ready for the pipeline.

    Attributes:
        name: the source string as the user gave it.
        spec: the parsed source; a TFDS source's config is resolved (never empty).
        splits: split name -> unbatched `tf.data.Dataset` of example dicts.
        num_examples: split name -> example count.
        dims: modality key (`text`, `audio`, `vision`) -> feature dim.
        max_lengths: modality key -> longest sequence over all splits.
        fixed_neg_inf: split name -> number of `-inf` audio values mapped to 0.
        shuffled: for sources held in memory (pickles), `(split, seed) -> dataset` of the
            split's examples in a new random order at every iteration, read in place;
            None for TFDS sources, which the pipeline shuffles through a buffer.
        input_sha256: absolute path -> sha256 of each file the data was read from (the
            pickle and label.csv; for a TFDS source the manual-dir file as recorded when
            the builder prepared it); a run records them in `config.json`.
    """

    name: str
    spec: SourceSpec
    splits: dict
    num_examples: dict[str, int]
    dims: dict[str, int]
    max_lengths: dict[str, int]
    fixed_neg_inf: dict[str, int]
    shuffled: Callable[[str, int], object] | None = None
    input_sha256: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def family(self) -> str:
        """Label family (`mosi`, `mosei` or `sims`): label range, scale and metrics."""
        return self.spec.family

    @property
    def label_scale(self) -> float:
        return LABEL_SCALE[self.family]


def example_signature(dims, unimodal_labels=False):
    """The `tf.TensorSpec` of one example (the shared data contract)."""
    import tensorflow as tf

    signature = {
        "id": tf.TensorSpec((), tf.string),
        "raw_text": tf.TensorSpec((), tf.string),
        "label": tf.TensorSpec((), tf.float32),
    }
    for key in MODALITY_KEYS:
        signature[key] = tf.TensorSpec((None, dims[key]), tf.float32)
        signature[f"{key}_length"] = tf.TensorSpec((), tf.int32)
    if unimodal_labels:
        for key in ("label_t", "label_a", "label_v"):
            signature[key] = tf.TensorSpec((), tf.float32)
    return signature


def load_source(
    spec: "str | SourceSpec",
    *,
    data_dir: str = "",
    manual_dir: str = "",
    manual_dirs: dict[str, str] | None = None,
    nan_to_num=False,
    trust_pickle=False,
    label_csv: str = "",
    flag: str = "source",
) -> Source:
    """Opens a source; bad strings and bad files raise `DataError`.

    Args:
        spec: a source string (parsed as the value of `--flag`) or a parsed `SourceSpec`.
        data_dir: TFDS data_dir ("" = TFDS' default).
        manual_dir: folder of the MMSA pickles for builders not in `manual_dirs`.
        manual_dirs: builder name -> its own manual dir (MOSI and MOSEI files share names).
        nan_to_num: map NaN/inf features to 0 instead of failing.
        trust_pickle: unpickle with plain pickle (any code the file names); by default only
            what MMSA files hold is allowed (`midg_keras.data.safe_pickle`).
        label_csv: an MMSA label.csv whose labels replace a pickle's (`join_label_csv`;
            rows with a mode in `LABEL_CSV_SKIP` are skipped); "" keeps the pickle's.
        flag: the flag the string came from, named in errors.
    """
    name = str(spec).strip()
    if not isinstance(spec, SourceSpec):
        spec = SourceSpec.parse(spec, flag)
    if label_csv and not spec.is_pickle:
        raise DataError(
            f"--label_csv needs a pickle source, not {name!r}",
            file=label_csv,
            fix="give --source=pickle:PATH of the feature file the label.csv belongs to",
        )
    if spec.is_pickle:
        return _load_pickle_source(name, spec, nan_to_num, trust_pickle, label_csv)
    manual_dir = (manual_dirs or {}).get(spec.builder) or manual_dir
    return _load_tfds_source(name, spec, data_dir, manual_dir, nan_to_num, trust_pickle)


def _load_pickle_source(name, spec, nan_to_num, trust_pickle, label_csv):
    import tensorflow as tf

    from midg_keras.data.label_csv import join_label_csv
    from midg_keras.data.mmsa import load_mmsa_pickle

    path = os.path.expanduser(spec.path)
    arrays = load_mmsa_pickle(
        path, family=spec.family, nan_to_num=nan_to_num, trust_pickle=trust_pickle
    )
    input_files = [path]
    if label_csv:
        label_csv = os.path.expanduser(label_csv)
        arrays = join_label_csv(arrays, label_csv, family=spec.family, skip_modes=LABEL_CSV_SKIP)
        input_files.append(label_csv)
    first = arrays["train"]
    dims = {key: int(getattr(first, key).shape[-1]) for key in MODALITY_KEYS}
    unimodal = bool(first.unimodal_labels)
    signature = example_signature(dims, unimodal_labels=unimodal)

    def from_arrays(split, generate):
        # A generator reads the loaded arrays in place: MOSEI-size files are not copied
        # into a second in-memory tensor.
        return tf.data.Dataset.from_generator(generate, output_signature=signature).apply(
            tf.data.experimental.assert_cardinality(len(arrays[split]))
        )

    def shuffled(split, seed):
        # A permutation per iteration (each epoch of `repeat()` calls `generate` again),
        # drawn from one seeded stream: a full shuffle with no buffer holding copies.
        permutations = np.random.default_rng(seed)

        def generate():
            yield from arrays[split].examples(permutations.permutation(len(arrays[split])))

        return from_arrays(split, generate)

    splits = {split: from_arrays(split, arrays[split].examples) for split in SPLITS}
    return Source(
        name=name,
        spec=spec,
        splits=splits,
        num_examples={split: len(arrays[split].label) for split in SPLITS},
        dims=dims,
        max_lengths={
            key: max(int(getattr(arrays[split], f"{key}_length").max()) for split in SPLITS)
            for key in MODALITY_KEYS
        },
        fixed_neg_inf={split: int(arrays[split].fixed_neg_inf) for split in SPLITS},
        shuffled=shuffled,
        input_sha256={os.path.abspath(p): file_sha256(p) for p in input_files},
    )


def _builder_class(name, spec):
    """The registered builder class of `spec`, after checking its config exists."""
    builder_class = _BUILDERS.get(spec.builder)
    if builder_class is None:
        raise DataError(
            f"source {name!r}: the TFDS builder {spec.builder!r} is not registered",
            fix="call datasets.register() before opening TFDS sources (train.py does)",
        )
    configs = list(builder_class.builder_configs)
    if spec.config and spec.config not in configs:
        close = difflib.get_close_matches(spec.config, configs, n=1)
        raise DataError(
            f"unknown source {name!r}: {spec.builder} has no config {spec.config!r}; "
            f"its configs are {', '.join(configs)}",
            fix=f"use {spec.builder}/{close[0] if close else configs[0]}",
        )
    return builder_class


def _load_tfds_source(name, spec, data_dir, manual_dir, nan_to_num, trust_pickle):
    import tensorflow_datasets as tfds

    builder_class = _builder_class(name, spec)
    options = {"config": spec.config or None, "data_dir": data_dir or None}
    if getattr(builder_class, "READS_MANUAL_PICKLE", False):
        options.update(nan_to_num=nan_to_num, trust_pickle=trust_pickle)
    builder = builder_class(**options)
    spec = dataclasses.replace(spec, config=builder.builder_config.name)
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir or None)
    builder.download_and_prepare(download_config=download_config)
    features = builder.info.features
    dims = {key: int(features[key].shape[-1]) for key in MODALITY_KEYS}
    splits = {split: builder.as_dataset(split=split, shuffle_files=False) for split in SPLITS}
    metadata = builder.info.metadata or {}
    return Source(
        name=name,
        spec=spec,
        splits=splits,
        num_examples={split: builder.info.splits[split].num_examples for split in SPLITS},
        dims=dims,
        max_lengths=_max_lengths(builder, splits),
        fixed_neg_inf={
            split: int(metadata.get("fixed_neg_inf", {}).get(split, 0)) for split in SPLITS
        },
        input_sha256=dict(metadata.get("source_sha256", {})),
    )


def _max_lengths(builder, splits):
    """Max lengths from the builder's metadata when recorded, else one pass over the lengths."""
    import tensorflow as tf

    recorded = (builder.info.metadata or {}).get("max_lengths")
    if recorded:
        return {key: int(recorded[key]) for key in MODALITY_KEYS}
    maxima = {key: 0 for key in MODALITY_KEYS}
    for split in SPLITS:
        lengths = splits[split].map(
            lambda ex: tf.stack([ex[f"{key}_length"] for key in MODALITY_KEYS])
        )
        for row in lengths.batch(4096).as_numpy_iterator():
            for i, key in enumerate(MODALITY_KEYS):
                maxima[key] = max(maxima[key], int(row[:, i].max()))
    return maxima


def split_stats(source: Source, split: str) -> dict:
    """Counts, lengths and label range of one split, read from the data (for `inspect`)."""
    import tensorflow as tf

    keys = list(MODALITY_KEYS)
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
