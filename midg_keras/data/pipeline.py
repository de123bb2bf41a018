"""tf.data pipeline: sources -> padded, masked, label-scaled batches for the model.

Batches are `(inputs, label)` where `inputs` holds, for each used modality `m` in
`text|audio|vision`, `m` (B, T, D) float32 zero-padded to the batch's longest sequence and
`m_mask` (B, T) bool, plus `source_index` (B,) int32 (which source dataset, for
`--domain_labels=source`). `label` is on the common scale (native / family max,
docs/design.md §3.6).
"""

import dataclasses
import json
import math
import re
from collections.abc import Callable

import tensorflow as tf

from midg_keras.config import Config
from midg_keras.constants import MODALITY_KEYS, MODALITY_LETTERS
from midg_keras.data.errors import DataError
from midg_keras.data.sources import Source, load_source, parse_sources

# Examples of TFDS sources smaller than this are cached in memory after the first epoch.
CACHE_BYTES = 2 << 30
# The shuffle buffer of TFDS sources holds copies of examples: at most this many bytes.
SHUFFLE_BUFFER_BYTES = 1 << 30
# Batches prepared ahead of the model (the autotuner is off, see `batch`).
PREFETCH_BATCHES = 2


@dataclasses.dataclass
class PreparedData:
    """Everything a run reads: batched splits plus the facts the model is built from.

    Attributes:
        sources: the training sources (model selection uses their validation splits only).
        targets: the datasets whose test splits are reported, in `--target` order (the first
            source when `--target` is empty); a target may be a source itself (in-domain).
        modalities: used modality keys, in `text, audio, vision` order.
        dims: modality key -> feature dim the model takes (the first source's dims).
        strides: modality key -> projection stride of its encoder (docs/design.md §4.1).
        train, validation: batched `(inputs, label)` source splits.
        tests: each target's test split as `(inputs, label, id)` batches, in `targets` order.
        new_train: builds `train` again, with a shuffle of its own. A shuffle's order
            depends on the iterators already made of it, so each run reads a new one and
            trains the same whether or not other runs came before it in the process.
    """

    sources: list[Source]
    targets: list[Source]
    modalities: list[str]
    dims: dict[str, int]
    strides: dict[str, int]
    train: tf.data.Dataset
    validation: tf.data.Dataset
    tests: list[tf.data.Dataset]
    new_train: Callable[[], tf.data.Dataset]

    @property
    def target(self) -> Source:
        """The first target: the one `metrics.json["test"]`, export and serving use."""
        return self.targets[0]

    @property
    def test(self) -> tf.data.Dataset:
        """The first target's test split."""
        return self.tests[0]

    def run_config_json(self, config: Config) -> str:
        """`config.json` of a run: the flags, each source's resolved spec and label family,
        and the sha256 of every input file (`input_sha256`: path -> hex digest).

        Export reads the (first) target's label family from here (`data_sources`) instead
        of re-deriving it from the flags.
        """
        values = json.loads(config.to_json())
        values["data_sources"] = {
            "source": [_describe(source) for source in self.sources],
            "target": _describe(self.target),
            "targets": [_describe(target) for target in self.targets],
        }
        values["input_sha256"] = {
            path: digest
            for source in self.sources + self.targets
            for path, digest in source.input_sha256.items()
        }
        return json.dumps(values, indent=2, sort_keys=True)


def _describe(source: Source) -> dict:
    return {"spec": str(source.spec), "label_family": source.family}


def target_slug(name: str) -> str:
    """A file-name part for a target (`mosei/unaligned_50` -> `mosei_unaligned_50`)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


@dataclasses.dataclass
class OpenedSources:
    """The opened source and target datasets of a run: what all its seeds share.

    Opening reads a pickle into memory (MOSEI: gigabytes); a multi-seed experiment opens
    once and batches per seed (`prepare_data(config, opened)`), so the arrays are never
    held twice.
    """

    sources: list[Source]
    targets: list[Source]


def open_sources(config: Config) -> OpenedSources:
    """Opens `--source` and `--target` (a target that is also a source is opened once)."""
    source_specs = parse_sources(config.source, "source")
    sources = [open_source(spec, config, label_csv=config.label_csv) for spec in source_specs]
    # A target that is also a source (its in-domain test split) is not read twice: on MOSEI
    # that is 1.7 GB of features. With --label_csv the source's labels differ from the file's.
    opened = {} if config.label_csv else {str(s): src for s, src in zip(source_specs, sources)}
    targets = [
        opened.get(str(spec)) or open_source(spec, config)
        for spec in parse_sources(config.target, "target")
    ]
    targets = targets or sources[:1]
    _check_target_names(targets)
    return OpenedSources(sources=sources, targets=targets)


def prepare_data(config: Config, opened: OpenedSources | None = None) -> PreparedData:
    """Checks the sources against each other and batches them for `config`'s seed.

    `opened` (`open_sources(config)`) reuses datasets already opened with the same data
    flags; without it the sources are opened here.
    """
    modalities = [MODALITY_LETTERS[m] for m in config.modality_list()]
    modalities = [key for key in MODALITY_KEYS if key in modalities]
    opened = opened or open_sources(config)
    sources, targets = opened.sources, opened.targets
    dims = {key: sources[0].dims[key] for key in modalities}
    for other in sources[1:] + [target for target in targets if target is not sources[0]]:
        check_dims(sources[0], other, modalities, config.harmonize)
    strides = resolve_strides(config, sources, modalities)

    def per_source(split, chosen, with_ids=False, seed=None):
        return [
            model_examples(
                source.shuffled(split, seed) if seed is not None else source.splits[split],
                modalities=modalities,
                dims=dims,
                label_scale=source.label_scale,
                source_index=index,
                cache=_cacheable(source, split) and seed is None,
                with_ids=with_ids,
            )
            for index, source in chosen
        ]

    def examples(split, chosen, with_ids=False):
        return _concatenate(per_source(split, chosen, with_ids))

    indexed_sources = list(enumerate(sources))

    def new_train():
        if config.shuffle_buffer and all(source.shuffled for source in sources):
            # In-memory sources shuffle by index, in place (no buffer of copies: on MOSEI a
            # 20 000-example buffer is a second 6 GB copy of the training set).
            shuffled = per_source("train", indexed_sources, seed=config.seed)
            counts = [source.num_examples["train"] for source in sources]
            train = (
                shuffled[0]
                if len(shuffled) == 1
                else tf.data.Dataset.sample_from_datasets(
                    shuffled, weights=[n / sum(counts) for n in counts], seed=config.seed
                )
            )
            return batch(train, config.batch_size)
        return batch(
            examples("train", indexed_sources),
            config.batch_size,
            shuffle_buffer=_shuffle_buffer(config, sources),
            seed=config.seed,
        )

    validation = batch(examples("validation", indexed_sources), config.batch_size)
    tests = [
        batch(examples("test", [(0, target)], with_ids=True), config.batch_size)
        for target in targets
    ]
    return PreparedData(
        sources=sources,
        targets=targets,
        modalities=modalities,
        dims=dims,
        strides=strides,
        train=new_train(),
        validation=validation,
        tests=tests,
        new_train=new_train,
    )


def _check_target_names(targets):
    """Targets key metrics and name prediction files: each must be told apart by its slug."""
    seen = {}
    for target in targets:
        slug = target_slug(target.name)
        if slug in seen:
            raise DataError(
                f"--target names {seen[slug]!r} and {target.name!r}, which share the file "
                f"name part {slug!r}",
                key="target",
                fix="give each target once",
            )
        seen[slug] = target.name


def open_source(spec, config: Config, label_csv: str = "") -> Source:
    """Opens one dataset with the run's data flags (data dir, manual dirs, NaN handling,
    trusted pickles).

    `label_csv` (`--label_csv`, passed for the source only) replaces its labels.
    """
    return load_source(
        spec,
        data_dir=config.data_dir,
        manual_dir=config.manual_dir,
        manual_dirs=config.manual_dir_map(),
        nan_to_num=config.nan_to_num,
        trust_pickle=config.trust_pickle,
        label_csv=label_csv,
    )


def model_examples(
    examples, *, modalities, dims, label_scale, source_index=0, cache=False, with_ids=False
):
    """Maps contract examples to unbatched `(inputs, label[, id])` model examples.

    Args:
        examples: dataset of example dicts (the shared data contract).
        modalities: modality keys to keep.
        dims: modality key -> feature dim the model takes; other dims are zero-padded or
            truncated to it (only reached with `--harmonize=pad`, checked by `check_dims`).
        label_scale: native labels are divided by this.
        source_index: value of `inputs["source_index"]`.
        cache: cache the mapped examples in memory.
        with_ids: also yield the example ids (for prediction files).
    """

    def to_model_example(example):
        inputs = {}
        for key in modalities:
            features = _fit_last_dim(example[key], dims[key])
            inputs[key] = features
            inputs[f"{key}_mask"] = tf.ones([tf.shape(features)[0]], tf.bool)
        inputs["source_index"] = tf.constant(source_index, tf.int32)
        label = example["label"] / label_scale
        return (inputs, label, example["id"]) if with_ids else (inputs, label)

    dataset = examples.map(to_model_example, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.cache() if cache else dataset


def batch(examples, batch_size, *, shuffle_buffer=0, seed=None):
    """Shuffles (when `shuffle_buffer` > 0) and pads to the longest sequence of each batch.

    tf.data's autotuner is off: on TF 2.21, deleting an iterator waits for the autotuner's
    thread to finish its current sleep, which grows with the iterator's age (up to 60 s), and
    Keras deletes one at the end of every epoch, validation pass and `fit` (docs/design.md
    §11). The pipeline is a Python generator, a cheap map and padding: a fixed prefetch of
    two batches keeps the model fed.
    """
    if shuffle_buffer:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.autotune.enabled = False
    return examples.padded_batch(batch_size).prefetch(PREFETCH_BATCHES).with_options(options)


def _fit_last_dim(features, dim):
    """Zero-pads or truncates the feature axis to `dim` (a no-op when it already fits)."""
    if features.shape[-1] == dim:
        return features
    features = features[:, :dim]
    return tf.pad(features, [[0, 0], [0, dim - tf.shape(features)[-1]]])


def check_dims(reference: Source, other: Source, modalities, harmonize: str):
    """Feature dims of two datasets must agree unless `--harmonize=pad` (docs/design.md §3.6)."""
    for key in modalities:
        if reference.dims[key] != other.dims[key] and harmonize != "pad":
            raise DataError(
                f"{key} features have dim {reference.dims[key]} in {reference.name} but "
                f"{other.dims[key]} in {other.name}",
                key=key,
                fix="supply features from a common extractor (e.g. MMSA-FET), or pass "
                "--harmonize=pad (zero-pad/truncate to the source dim; lossy), or leave this "
                "modality out with --modalities",
            )


def resolve_strides(config: Config, sources, modalities) -> dict[str, int]:
    """Per-modality projection stride: text 1; audio/vision `auto` or forced.

    See docs/design.md §4.1.
    """
    strides = {}
    for key in modalities:
        if key == "text":
            strides[key] = 1
        elif config.av_stride == "auto":
            longest = max(source.max_lengths[key] for source in sources)
            strides[key] = max(1, math.ceil(longest / config.max_frames))
        else:
            strides[key] = int(config.av_stride)
    return strides


def _shuffle_buffer(config: Config, sources) -> int:
    """`--shuffle_buffer`, capped so the buffer's copies stay under `SHUFFLE_BUFFER_BYTES`."""
    if not config.shuffle_buffer:
        return 0
    largest = max(_bytes_per_example(source) for source in sources)
    return max(config.batch_size, min(config.shuffle_buffer, SHUFFLE_BUFFER_BYTES // largest))


def _bytes_per_example(source: Source) -> int:
    return 4 * sum(source.max_lengths[k] * source.dims[k] for k in source.dims)


def _cacheable(source: Source, split: str) -> bool:
    """Pickle sources are already in memory: caching them would hold a second copy."""
    if source.spec.is_pickle:
        return False
    return _bytes_per_example(source) * source.num_examples[split] < CACHE_BYTES


def _concatenate(datasets):
    result = datasets[0]
    for dataset in datasets[1:]:
        result = result.concatenate(dataset)
    return result
