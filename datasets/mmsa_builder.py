"""Shared TFDS machinery for the MMSA feature pickles (MOSI, MOSEI, SIMS) and synthetic data.

All reading and validation of a pickle is `midg_keras.data.mmsa.load_mmsa_pickle`; a
builder only finds the user's file in the manual dir, checks that its feature dims fit
the chosen config, compares its sha256 with the one MMSA publishes (a mismatch is a
warning: features re-extracted with MMSA-FET legitimately differ), and writes the examples.
Bad files raise the loader's `DataError` unchanged. The builders take the loader's options
as keyword arguments: `tfds.builder("mosi", nan_to_num=True, trust_pickle=True)`.

What a build records in `builder.info.metadata` (saved with the dataset, restored on
reload):
    fixed_neg_inf: {"train"|"validation"|"test": number of -inf audio values set to 0}
    max_lengths:   {"text"|"audio"|"vision": longest true sequence over all splits}
    source_file:   name of the file the examples were read from (manual builders only)
    source_sha256: {absolute path of that file: its sha256} (manual builders only)
"""

import dataclasses
import logging
import os

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from midg_keras.constants import MODALITY_KEYS, SPLITS
from midg_keras.data.errors import DataError

UNIMODAL_LABELS = ("label_t", "label_a", "label_v")
MMSA_HOMEPAGE = "https://github.com/thuiar/MMSA"
# Where MMSA publishes the sha256 of its feature files (README, "SHA-256 for feature files").
MMSA_CHECKSUMS_URL = (
    "https://github.com/thuiar/MMSA/blob/a94e65d07fa1ae0d44e552390074b29b0898edfd/README.md"
)

_logger = logging.getLogger(__name__)
# (path, sha256) pairs already warned about: a mismatch is reported once per process.
_WARNED_MISMATCHES = set()


def features_dict(dims, unimodal_labels=False):
    """The TFDS features of one example (see the data contract in the team brief).

    Args:
        dims: {"text"|"audio"|"vision": feature dim D}.
        unimodal_labels: add `label_t`, `label_a`, `label_v` (SIMS family).

    Returns:
        `tfds.features.FeaturesDict` with sequences of shape (None, D), trimmed to their
        true length.
    """
    features = {
        "id": tfds.features.Text(doc="'<video>$_$<clip>'"),
        "raw_text": tfds.features.Text(doc="Transcript of the clip."),
        "label": tfds.features.Scalar(
            dtype=np.float32, doc="Sentiment regression label, native scale."
        ),
    }
    for modality in MODALITY_KEYS:
        features[modality] = tfds.features.Tensor(
            shape=(None, dims[modality]),
            dtype=np.float32,
            doc=f"{modality} features, trimmed to {modality}_length steps.",
        )
        features[f"{modality}_length"] = tfds.features.Scalar(
            dtype=np.int32, doc=f"True length of the {modality} sequence (>= 1)."
        )
    if unimodal_labels:
        for key in UNIMODAL_LABELS:
            features[key] = tfds.features.Scalar(
                dtype=np.float32, doc=f"Unimodal label ({key[-1].upper()}), native scale."
            )
    return tfds.features.FeaturesDict(features)


def record_split_statistics(metadata, splits):
    """Writes `fixed_neg_inf` and `max_lengths` of `splits` into a builder's metadata.

    Args:
        metadata: `builder.info.metadata` (a `tfds.core.MetadataDict`).
        splits: {"train"|"validation"|"test": SplitArrays} as `load_mmsa_pickle` returns.
    """
    metadata["fixed_neg_inf"] = {name: int(splits[name].fixed_neg_inf) for name in SPLITS}
    metadata["max_lengths"] = {
        modality: max(int(np.max(getattr(splits[name], f"{modality}_length"))) for name in SPLITS)
        for modality in MODALITY_KEYS
    }


def keyed_examples(split_arrays):
    """(key, example) pairs of one split, keyed by row: file order is the canonical order."""
    yield from enumerate(split_arrays.examples())


@dataclasses.dataclass(eq=False)
class MmsaConfig(tfds.core.BuilderConfig):
    """One stock MMSA feature file.

    Attributes:
        file_name: name the file must have inside the manual dir.
        mmsa_path: where the file sits in MMSA's shared folder.
        dims: {"text"|"audio"|"vision": feature dim} the file must have.
        padded_lengths: {"text"|"audio"|"vision": padded sequence length} of the stock file
            (documentation; the builder does not require it).
        sha256: checksum of the stock file as MMSA publishes it (`MMSA_CHECKSUMS_URL`).
        num_bytes: size of the stock file where known, else 0.
    """

    file_name: str = ""
    mmsa_path: str = ""
    dims: dict = dataclasses.field(default_factory=dict)
    padded_lengths: dict = dataclasses.field(default_factory=dict)
    sha256: str = ""
    num_bytes: int = 0

    @property
    def aligned(self):
        return self.name.startswith("aligned")


def _describe_config(config):
    shapes = ", ".join(
        f"{modality} ({config.padded_lengths[modality]}, {config.dims[modality]})"
        for modality in MODALITY_KEYS
    )
    return f"MMSA {config.mmsa_path}: {shapes}"


def manual_instructions(dataset_title, configs):
    """MANUAL_DOWNLOAD_INSTRUCTIONS text listing the file of every config."""
    lines = [
        f"This builder reads the {dataset_title} feature pickle that MMSA",
        f"({MMSA_HOMEPAGE}) distributes. Download it from the links in the MMSA README",
        "(Google Drive or Baidu Netdisk, section 'Datasets') and copy it, renamed as below,",
        "into the manual dir: train.py's `--manual_dirs=<builder>=DIR` or `--manual_dir=DIR`",
        "(tfds: `tfds.download.DownloadConfig(manual_dir=...)`), by default",
        "`<data_dir>/downloads/manual/`.",
        "",
    ]
    for config in configs:
        size = f", {config.num_bytes} bytes" if config.num_bytes else ""
        lines.append(
            f"* config `{config.name}`: `{config.mmsa_path}` -> `<manual_dir>/{config.file_name}`"
            f" (sha256 {config.sha256}{size})"
        )
    lines += [
        "",
        "The build compares the file's sha256 with the one MMSA publishes and warns on a",
        "mismatch (expected for features you extracted yourself with MMSA-FET). The file is",
        "read with the project's MMSA loader, which refuses pickles that could run code",
        "(pass trust_pickle=True / --trust_pickle for a file you trust), validates it and",
        "names the split, key and sample of any problem.",
    ]
    return "\n".join(lines)


class MmsaBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Builder over one MMSA feature pickle placed in the manual dir.

    Subclasses set `name`, `BUILDER_CONFIGS` (of `MmsaConfig`), `FAMILY`, `TITLE`,
    `CITATION` and `MANUAL_DOWNLOAD_INSTRUCTIONS`.

    Args:
        nan_to_num: build with NaN/inf features set to 0 instead of failing.
        trust_pickle: unpickle the file with plain pickle (any code it names).
        **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (`config`, `data_dir`, ...).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    FAMILY = "mosi"
    TITLE = ""
    CITATION = ""
    # `midg_keras.data.sources` passes the loader options (`nan_to_num`, `trust_pickle`).
    READS_MANUAL_PICKLE = True

    def __init__(self, *, nan_to_num=False, trust_pickle=False, **kwargs):
        super().__init__(**kwargs)
        self.nan_to_num = nan_to_num
        self.trust_pickle = trust_pickle
        # tfds re-creates a pickled builder from `_original_state`.
        self._original_state.update(nan_to_num=nan_to_num, trust_pickle=trust_pickle)

    def _info(self):
        return self.dataset_info_from_configs(
            description=(
                f"{self.TITLE} features as distributed by MMSA, one example per clip, "
                f"sequences trimmed to their true lengths. Label family: {self.FAMILY}."
            ),
            features=features_dict(self.builder_config.dims, unimodal_labels=self.FAMILY == "sims"),
            homepage=MMSA_HOMEPAGE,
            citation=self.CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        from midg_keras.data.mmsa import load_mmsa_pickle  # Only needed when building.

        path = self._manual_file(dl_manager)
        splits = load_mmsa_pickle(
            path, family=self.FAMILY, nan_to_num=self.nan_to_num, trust_pickle=self.trust_pickle
        )
        self._check_layout(path, splits)
        digest = self._check_sha256(path)
        self.info.metadata["source_file"] = path.name
        self.info.metadata["source_sha256"] = {os.path.abspath(path): digest}
        record_split_statistics(self.info.metadata, splits)
        return {name: self._generate_examples(splits[name]) for name in SPLITS}

    def _generate_examples(self, split_arrays):
        return keyed_examples(split_arrays)

    def _manual_file(self, dl_manager):
        """Path of this config's file in the manual dir, or a DataError saying how to get it."""
        config = self.builder_config
        fix = (
            f"download MMSA's {config.mmsa_path} (links in the {MMSA_HOMEPAGE} README), "
            f"save it as DIR/{config.file_name} and pass --manual_dirs={self.name}=DIR "
            "(or --manual_dir=DIR for every builder); see "
            f"{type(self).__name__}.MANUAL_DOWNLOAD_INSTRUCTIONS"
        )
        try:
            manual_dir = epath.Path(dl_manager.manual_dir)
        except AssertionError as error:  # tfds: the manual dir is missing or empty.
            reason = str(error).split(". ")[0]  # "Manual directory X does not exist or is empty"
            raise DataError(
                f"{self.name}/{config.name} needs {config.file_name}: {reason}", fix=fix
            ) from None
        path = manual_dir / config.file_name
        if not path.exists():
            present = sorted(p.name for p in manual_dir.iterdir())
            raise DataError(
                f"{self.name}/{config.name} needs this file; the manual dir holds {present}",
                file=path,
                fix=fix,
            )
        return path

    def _check_sha256(self, path):
        """The file's sha256; a warning (once per file) when it is not the published one."""
        from midg_keras.data.checksums import file_sha256

        config = self.builder_config
        digest = file_sha256(path)
        if config.sha256 and digest != config.sha256 and (path, digest) not in _WARNED_MISMATCHES:
            _WARNED_MISMATCHES.add((path, digest))
            _logger.warning(
                "%s: sha256 %s is not the %s MMSA publishes for %s (%s); expected for "
                "features extracted with MMSA-FET, otherwise download the file again",
                path,
                digest,
                config.sha256,
                config.mmsa_path,
                MMSA_CHECKSUMS_URL,
            )
        return digest

    def _check_layout(self, path, splits):
        """Feature dims and alignment of the file must be those of the config.

        A file is aligned when text, audio and vision share one padded length (stock
        aligned_50: 50/50/50; stock unaligned files never do), so an aligned file renamed
        to `unaligned_50.pkl`, or the reverse, is refused rather than built under the
        wrong name.
        """
        config = self.builder_config
        train = splits["train"]
        dims = {modality: int(getattr(train, modality).shape[-1]) for modality in MODALITY_KEYS}
        padded = {modality: int(getattr(train, modality).shape[1]) for modality in MODALITY_KEYS}
        aligned = len(set(padded.values())) == 1
        if dims == config.dims and aligned == config.aligned:
            return
        found = ", ".join(f"{m} ({padded[m]}, {dims[m]})" for m in MODALITY_KEYS)
        fits = [
            f"{name}/{other.name}"
            for name, configs in STOCK_CONFIGS.items()
            for other in configs
            if other.dims == dims and other.aligned == aligned
        ]
        raise DataError(
            f"the file's (length, dim) per modality are {found}, which does not fit "
            f"{self.name}/{config.name} ({_describe_config(config)})",
            file=path,
            split="train",
            fix=(
                f"build {' or '.join(fits)} with this file instead"
                if fits
                else f"place MMSA's {config.mmsa_path} in the manual dir as {config.file_name}"
            ),
        )


def _config(name, dataset_dir, dims, padded_lengths, sha256, num_bytes=0):
    config = MmsaConfig(
        name=name,
        file_name=f"{name}.pkl",
        mmsa_path=f"{dataset_dir}/Processed/{name}.pkl",
        dims=dims,
        padded_lengths=padded_lengths,
        sha256=sha256,
        num_bytes=num_bytes,
    )
    config.description = _describe_config(config)
    return config


_MOSI_DIMS = {"text": 768, "audio": 5, "vision": 20}
_MOSEI_DIMS = {"text": 768, "audio": 74, "vision": 35}
_ALIGNED_50 = {"text": 50, "audio": 50, "vision": 50}

# The stock MMSA files. Checksums: MMSA's README (`MMSA_CHECKSUMS_URL`), all five in full;
# SIMS' also matches its Git LFS pointer (SOURCES.md in the shared real-data folder).
STOCK_CONFIGS = {
    "mosi": [
        _config(
            "unaligned_50",
            "MOSI",
            _MOSI_DIMS,
            {"text": 50, "audio": 375, "vision": 500},
            "78e0f8b5ef8ff71558e7307848fc1fa929ecb078203f565ab22b9daab2e02524",
        ),
        _config(
            "aligned_50",
            "MOSI",
            _MOSI_DIMS,
            _ALIGNED_50,
            "d3994fd25681f9c7ad6e9c6596a6fe9b4beb85ff7d478ba978b124139002e5f9",
        ),
    ],
    "mosei": [
        _config(
            "unaligned_50",
            "MOSEI",
            _MOSEI_DIMS,
            {"text": 50, "audio": 500, "vision": 500},
            "ad8b23d50557045e7d47959ce6c5b955d8d983f2979c7d9b7b9226f6dd6fec1f",
        ),
        _config(
            "aligned_50",
            "MOSEI",
            _MOSEI_DIMS,
            _ALIGNED_50,
            "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791",
        ),
    ],
    "sims": [
        _config(
            "unaligned_39",
            "SIMS",
            {"text": 768, "audio": 33, "vision": 709},
            {"text": 39, "audio": 400, "vision": 55},
            "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f",
            num_bytes=1228189774,
        ),
    ],
}
