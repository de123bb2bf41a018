"""Reader and validator of MMSA feature pickles (thuiar/MMSA, MMSA-FET).

An MMSA file is a pickled dict `{"train", "valid", "test"}` of dicts of numpy arrays:
`id` ("<video>$_$<clip>"), `raw_text`, `text` (N, L_t, D_t), `text_bert` (N, 3, L_t),
`audio` (N, L_a, D_a), `vision` (N, L_v, D_v), `regression_labels` (N,), for unaligned
files `audio_lengths` / `vision_lengths`, for SIMS `regression_labels_T/A/V`. Files from
MMSA-FET add a top-level `config`. Everything is checked here, vectorized, before any
training starts; a problem is one `DataError` naming file, split, key, sample and fix.

Files are unpickled by `safe_pickle.load_pickle`, which refuses any global an MMSA file
does not need (so a file cannot run code) unless `trust_pickle=True`.
"""

import dataclasses
import logging
import os
from collections.abc import Iterator

import numpy as np

from midg_keras.constants import FILE_SPLITS, LABEL_SCALE, MODALITY_KEYS
from midg_keras.data.errors import DataError
from midg_keras.data.safe_pickle import load_pickle

UNIMODAL_KEYS = {
    "regression_labels_T": "label_t",
    "regression_labels_A": "label_a",
    "regression_labels_V": "label_v",
}
REQUIRED_KEYS = ("id", "raw_text", "text", "audio", "vision", "regression_labels")
_NAN_FIX = "clean the file, or pass --nan_to_num (nan_to_num=True) to map NaN and inf to 0"
# Feature arrays are scanned for NaN/inf in blocks of samples of about this many values,
# so MOSEI-size arrays never need a second full-size boolean array.
_SCAN_BLOCK_VALUES = 1 << 22
_LABEL_TOLERANCE = 1e-5

_logger = logging.getLogger(__name__)


@dataclasses.dataclass
class SplitArrays:
    """One split of an MMSA file, validated.

    Attributes:
        text, audio, vision: (N, L, D) float32 features, padded as in the file.
        text_length, audio_length, vision_length: (N,) int32 true lengths, each in [1, L].
        label: (N,) float32 sentiment on the family's native scale.
        ids: N ids "<video>$_$<clip>".
        raw_text: N transcripts.
        unimodal_labels: `label_t`, `label_a`, `label_v` -> (N,) float32 (SIMS only, else {}).
        fixed_neg_inf: number of `-inf` audio values set to 0 (as MMSA's loader does).
        fixed_non_finite: number of other NaN/inf feature values set to 0 (only with
            `nan_to_num=True`).
    """

    text: np.ndarray
    audio: np.ndarray
    vision: np.ndarray
    text_length: np.ndarray
    audio_length: np.ndarray
    vision_length: np.ndarray
    label: np.ndarray
    ids: list[str]
    raw_text: list[str]
    unimodal_labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    fixed_neg_inf: int = 0
    fixed_non_finite: int = 0

    def __len__(self):
        return int(self.label.shape[0])

    def examples(self, order=None) -> Iterator[dict]:
        """Yields one example dict per sample, features trimmed to their true lengths.

        Keys follow the shared data contract: `id`, `raw_text`, `text`, `audio`,
        `vision`, `text_length`, `audio_length`, `vision_length`, `label`, and
        `label_t/a/v` when the split has unimodal labels. Features are views, not copies.
        `order` (sample indices) reads the samples in that order; default: file order.
        """
        for i in range(len(self)) if order is None else order:
            example = {"id": self.ids[i], "raw_text": self.raw_text[i]}
            for modality in MODALITY_KEYS:
                length = int(getattr(self, f"{modality}_length")[i])
                example[modality] = getattr(self, modality)[i, :length]
                example[f"{modality}_length"] = np.int32(length)
            example["label"] = np.float32(self.label[i])
            for key, values in self.unimodal_labels.items():
                example[key] = np.float32(values[i])
            yield example


def load_mmsa_pickle(
    path, family="mosi", nan_to_num=False, trust_pickle=False
) -> dict[str, SplitArrays]:
    """Reads and validates an MMSA feature pickle.

    Text lengths come from the attention mask `text_bert[:, 1, :]` when the file has
    `text_bert`, else the full L_t. Unaligned files give audio/vision lengths in
    `audio_lengths`/`vision_lengths`; aligned files have none, and audio/vision take the
    text lengths when their sequences are as long as the text, else their full length.
    `-inf` in audio is set to 0 and counted (MMSA does the same).

    Args:
        path: the `.pkl` file.
        family: label family, `mosi`, `mosei` (labels in [-3, 3]) or `sims` ([-1, 1],
            with unimodal labels `regression_labels_T/A/V`).
        nan_to_num: set NaN and inf feature values to 0 (counted in `fixed_non_finite`)
            instead of raising.
        trust_pickle: unpickle with plain pickle, which runs any code the file names;
            by default only the globals of MMSA files are allowed (`safe_pickle`).

    Returns:
        `{"train", "validation", "test"}` -> `SplitArrays`.

    Raises:
        DataError: the file is missing, unreadable, names a global MMSA files do not
            need, or fails any check; the message names file, split, key, sample and fix.

    Example:
        >>> splits = load_mmsa_pickle("MOSI/Processed/unaligned_50.pkl", family="mosi")
        >>> next(splits["train"].examples())["audio"].shape  # (audio_length, 5)
    """
    path = os.fspath(path)
    _check_family(family, path)
    data = _read_pickle(path, trust_pickle)
    return mmsa_splits(data, family=family, nan_to_num=nan_to_num, source=path)


def mmsa_splits(data, family="mosi", nan_to_num=False, source=None) -> dict[str, SplitArrays]:
    """Validates an MMSA dict already in memory (what `pickle.load` gives for a file).

    Checks and returns exactly what `load_mmsa_pickle` does. Arrays are used in place,
    not copied: `-inf` audio values (and with `nan_to_num` NaN/inf) are zeroed in `data`.

    Args:
        data: `{"train", "valid", "test"}` -> dict of arrays in MMSA layout.
        family: `mosi`, `mosei` or `sims`.
        nan_to_num: set NaN and inf feature values to 0 instead of raising.
        source: names the data's origin (a path) in error messages.

    Returns:
        `{"train", "validation", "test"}` -> `SplitArrays`.
    """
    _check_family(family, source)
    if not isinstance(data, dict):
        raise DataError(
            f"holds a {type(data).__name__}, expected a dict with splits 'train', 'valid', 'test'",
            file=source,
            fix="pass an MMSA feature file (e.g. unaligned_50.pkl)",
        )
    splits = {}
    reference_dims = None
    for file_split, split in FILE_SPLITS.items():
        raw = _find_split(data, file_split, source)
        reader = _SplitReader(source, file_split, raw, family, nan_to_num)
        splits[split] = reader.read(reference_dims)
        if reference_dims is None:
            reference_dims = (file_split, reader.dims)
        if splits[split].fixed_neg_inf:
            _logger.info(
                "%s: split %r: set %d -inf audio values to 0",
                source,
                file_split,
                splits[split].fixed_neg_inf,
            )
        if splits[split].fixed_non_finite:
            _logger.warning(
                "%s: split %r: set %d NaN/inf feature values to 0 (nan_to_num)",
                source,
                file_split,
                splits[split].fixed_non_finite,
            )
    return splits


def _check_family(family, source):
    if family not in LABEL_SCALE:
        raise DataError(
            f"unknown label family {family!r}",
            file=source,
            fix="use family 'mosi', 'mosei' or 'sims' (`@mosi`, `@mosei`, `@sims`)",
        )


def _read_pickle(path, trust_pickle):
    if not os.path.exists(path):
        raise DataError(
            "file not found",
            file=path,
            fix="check the path; MMSA feature files are e.g. MOSI/Processed/unaligned_50.pkl",
        )
    if os.path.isdir(path):
        raise DataError("is a directory, not a pickle file", file=path, fix="give the .pkl file")
    try:
        try:
            data = load_pickle(path, trust=trust_pickle)
        except UnicodeDecodeError:
            # Python 2 pickles of numpy arrays need latin1 to decode their byte strings.
            data = load_pickle(path, trust=trust_pickle, encoding="latin1")
    except DataError:
        raise
    except ImportError as error:
        raise DataError(
            f"unpickling needs Python module {error.name!r}, which is not installed",
            file=path,
            fix=f"install {error.name!r}, or re-save the file with numpy arrays "
            "(MMSA-FET: return_type='np')",
        ) from None
    except MemoryError:
        raise
    except Exception as error:  # pickle reports bad bytes with many exception types.
        size = os.path.getsize(path)
        what = "is empty" if size == 0 else "is truncated or not a pickle"
        raise DataError(
            f"{what} ({size} bytes; {type(error).__name__}: {error})",
            file=path,
            fix="download or copy the file again and compare its size and sha256 with the source",
        ) from None
    return data


def _find_split(data, file_split, path):
    names = [file_split] + (["validation"] if file_split == "valid" else [])
    for name in names:
        if name in data:
            raw = data[name]
            if not isinstance(raw, dict):
                raise DataError(
                    f"is a {type(raw).__name__}, expected a dict of arrays",
                    file=path,
                    split=name,
                    fix="write each split as a dict of numpy arrays (MMSA layout)",
                )
            return raw
    raise DataError(
        f"missing (the file has top-level keys {_key_list(data)})",
        file=path,
        split=file_split,
        fix="MMSA files have splits 'train', 'valid' and 'test'; write all three",
    )


def _key_list(mapping):
    return ", ".join(repr(str(key)) for key in mapping) or "none"


class _SplitReader:
    """Turns one raw split dict into a validated `SplitArrays`."""

    def __init__(self, path, split, raw, family, nan_to_num):
        self.path = path
        self.split = split
        self.raw = raw
        self.family = family
        self.nan_to_num = nan_to_num
        self.ids = []
        self.dims = {}

    def error(self, message, key=None, sample=None, fix=None):
        if sample is not None and sample < len(self.ids):
            sample = f"{sample} (id {self.ids[sample]!r})"
        return DataError(message, file=self.path, split=self.split, key=key, sample=sample, fix=fix)

    def read(self, reference_dims):
        self._check_keys()
        self.ids = self._strings("id")
        n = len(self.ids)
        if not n:
            raise self.error(
                "has no samples", key="id", fix="write at least one sample in every split"
            )
        features = {m: self._features(m) for m in MODALITY_KEYS}
        self.dims = {m: int(features[m].shape[2]) for m in MODALITY_KEYS}
        if reference_dims is not None:
            self._check_dims(*reference_dims)
        raw_text = self._strings("raw_text")
        for key, count in [("raw_text", len(raw_text))] + [
            (m, features[m].shape[0]) for m in MODALITY_KEYS
        ]:
            self._check_count(key, count, n)
        label = self._labels("regression_labels", n)
        unimodal = {}
        if self.family == "sims":
            unimodal = {name: self._labels(key, n) for key, name in UNIMODAL_KEYS.items()}
        lengths = self._lengths(features, n)
        fixed_neg_inf, fixed_non_finite = 0, 0
        for modality in MODALITY_KEYS:
            features[modality], neg_inf, non_finite = self._scan_non_finite(
                modality, features[modality]
            )
            fixed_neg_inf += neg_inf
            fixed_non_finite += non_finite
        return SplitArrays(
            text=features["text"],
            audio=features["audio"],
            vision=features["vision"],
            text_length=lengths["text"],
            audio_length=lengths["audio"],
            vision_length=lengths["vision"],
            label=label,
            ids=self.ids,
            raw_text=raw_text,
            unimodal_labels=unimodal,
            fixed_neg_inf=fixed_neg_inf,
            fixed_non_finite=fixed_non_finite,
        )

    def _check_keys(self):
        required = list(REQUIRED_KEYS)
        if self.family == "sims":
            required += list(UNIMODAL_KEYS)
        missing = [key for key in required if key not in self.raw]
        if not missing:
            return
        fix = f"write the split in MMSA layout with keys {', '.join(required)} (as MMSA-FET does)"
        if missing[0] in UNIMODAL_KEYS:
            fix = (
                "SIMS files carry unimodal labels regression_labels_T/A/V; if this is not "
                "a SIMS file name its family with `@mosi` or `@mosei`"
            )
        raise self.error(
            f"missing (the split has keys {_key_list(self.raw)})", key=missing[0], fix=fix
        )

    def _array(self, key):
        value = self.raw[key]
        if not isinstance(value, np.ndarray) and hasattr(value, "numpy"):
            value = value.numpy()  # torch tensors (MMSA-FET return_type='pt')
        return value

    def _strings(self, key):
        value = self._array(key)
        if isinstance(value, (list, tuple)):
            try:  # an object array keeps bytes as bytes (numpy would decode them as ASCII)
                value = np.asarray(value, dtype=object)
            except ValueError:  # nested sequences numpy cannot even hold as objects
                value = None
        if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
            raise self.error(
                f"has shape {np.shape(value)}, expected one string per sample (N,)",
                key=key,
                fix="store one string per sample",
            )
        strings = []
        for i, x in enumerate(value):
            if isinstance(x, bytes):
                try:
                    x = x.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise self.error(
                        f"is not UTF-8 text ({error.reason} at byte {error.start})",
                        key=key,
                        sample=i,
                        fix="store the strings as str, or as UTF-8 bytes",
                    ) from None
            elif isinstance(x, (list, tuple, dict, np.ndarray)):
                raise self.error(
                    f"is a {type(x).__name__}, expected a string",
                    key=key,
                    sample=i,
                    fix="store one string per sample",
                )
            strings.append(str(x))
        return strings

    def _features(self, key):
        value = self._array(key)
        if not isinstance(value, np.ndarray) or value.dtype == object:
            value = self._stack_samples(key, value)
        if value.ndim != 3:
            raise self.error(
                f"has shape {value.shape}, expected rank 3 (samples, time, features)",
                key=key,
                fix="store features as one (N, L, D) array, zero-padded along time",
            )
        if value.dtype.kind not in "fiu":
            raise self.error(
                f"has dtype {value.dtype}, expected numbers",
                key=key,
                fix="store features as float32",
            )
        if min(value.shape[1:]) < 1:
            raise self.error(
                f"has shape {value.shape}: no time steps or no features",
                key=key,
                fix="re-extract the features",
            )
        if value.dtype == np.float32:
            return value
        with np.errstate(over="ignore"):  # beyond float32's range: +-inf, reported by the scan
            return value.astype(np.float32)

    def _stack_samples(self, key, value):
        """Per-sample arrays (list or object array) -> one array, if all shapes agree."""
        try:
            samples = list(value)
        except TypeError:
            raise self.error(
                f"is a {type(value).__name__}, expected an (N, L, D) array",
                key=key,
                fix="store features as one (N, L, D) array",
            ) from None
        shapes = [np.shape(sample) for sample in samples]
        for i, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise self.error(
                    f"is ragged: shape {shape}, but sample 0 has {shapes[0]}",
                    key=key,
                    sample=i,
                    fix="zero-pad every sample to one length and store the true lengths "
                    f"in '{key}_lengths' (as MMSA does)",
                )
        try:
            with np.errstate(over="ignore"):  # beyond float32's range: +-inf, as in `_features`
                return np.asarray(samples, dtype=np.float32) if samples else np.zeros((0, 0, 0))
        except (TypeError, ValueError) as error:
            raise self.error(
                f"cannot be read as numbers ({error})",
                key=key,
                fix="store features as one (N, L, D) float array",
            ) from None

    def _check_dims(self, reference_split, reference_dims):
        for modality in MODALITY_KEYS:
            if self.dims[modality] != reference_dims[modality]:
                raise self.error(
                    f"feature dim {self.dims[modality]} differs from split "
                    f"{reference_split!r} ({reference_dims[modality]})",
                    key=modality,
                    fix="extract all splits with the same feature extractor",
                )

    def _check_count(self, key, count, n):
        if count != n:
            raise self.error(
                f"has {count} samples but key 'id' has {n}",
                key=key,
                fix="write every key of a split with the same samples in the same order",
            )

    def _vector(self, key, n, what):
        try:
            value = np.asarray(self._array(key))
        except ValueError:  # nested sequences of unequal lengths
            raise self.error(
                "is ragged, expected one number per sample",
                key=key,
                fix=f"store one {what} per sample as a flat array",
            ) from None
        if value.ndim == 0 or value.shape[0] != n:
            count = "a scalar" if value.ndim == 0 else f"{value.shape[0]} samples"
            raise self.error(
                f"has {count} but key 'id' has {n}",
                key=key,
                fix="write every key of a split with the same samples in the same order",
            )
        if value.size != n:
            raise self.error(
                f"has shape {value.shape}, expected one {what} per sample ({n},)",
                key=key,
                fix=f"store one {what} per sample",
            )
        if value.dtype.kind not in "fiub":
            raise self.error(
                f"has dtype {value.dtype}, expected numbers",
                key=key,
                fix=f"store the {what}s as numbers",
            )
        return value.reshape(n)

    def _labels(self, key, n):
        with np.errstate(over="ignore"):  # beyond float32's range: +-inf, out of range below
            label = self._vector(key, n, "label").astype(np.float32, copy=False)
        bad = np.isnan(label)
        if bad.any():
            raise self.error(
                "label is NaN",
                key=key,
                sample=int(np.argmax(bad)),
                fix="drop the sample or fill in its label (see the dataset's label.csv)",
            )
        bound = LABEL_SCALE[self.family]
        bad = np.abs(label) > bound + _LABEL_TOLERANCE
        if bad.any():
            i = int(np.argmax(bad))
            if self.family == "sims":
                fix = "if this is a MOSI/MOSEI file, name its family with `@mosi` or `@mosei`"
            else:
                fix = (
                    "correct the label; MOSI/MOSEI labels lie in [-3, 3], SIMS labels in "
                    "[-1, 1] (name a SIMS file's family with `@sims`)"
                )
            raise self.error(
                f"label {float(label[i]):g} is outside [-{bound:g}, {bound:g}], the range "
                f"of the assumed family {self.family!r}",
                key=key,
                sample=i,
                fix=fix,
            )
        return label

    def _lengths(self, features, n):
        text_len = features["text"].shape[1]
        if "text_bert" in self.raw:
            text_length = self._text_bert_lengths(n)
            self._check_lengths(text_length, text_len, "text_bert", "text")
        else:
            text_length = np.full(n, text_len, dtype=np.int32)
        lengths = {"text": text_length}
        for modality in ("audio", "vision"):
            key = f"{modality}_lengths"
            seq_len = features[modality].shape[1]
            if key in self.raw:
                value = self._vector(key, n, "length")
                if value.dtype.kind == "f" and not np.array_equal(value, np.round(value)):
                    i = int(np.argmax(value != np.round(value)))
                    raise self.error(
                        f"length {value[i]} is not a whole number",
                        key=key,
                        sample=i,
                        fix="store lengths as integers",
                    )
                # Checked before the cast: 2**32 + 5 would wrap around to a valid 5.
                self._check_lengths(value, seq_len, key, modality)
                length = value.astype(np.int32)
            elif seq_len == text_len:
                length = text_length.copy()
            else:
                length = np.full(n, seq_len, dtype=np.int32)
            lengths[modality] = length
        return lengths

    def _text_bert_lengths(self, n):
        text_bert = self._features("text_bert")
        self._check_count("text_bert", text_bert.shape[0], n)
        if text_bert.shape[1] != 3:
            raise self.error(
                f"has shape {text_bert.shape}, expected (N, 3, L): input ids, attention "
                "mask, segment ids",
                key="text_bert",
                fix="store the BERT tokenizer output as MMSA does, or drop the key to use "
                "the full text length",
            )
        mask = text_bert[:, 1, :]
        bad = (mask != 0) & (mask != 1)
        if bad.any():
            raise self.error(
                "attention mask text_bert[:, 1, :] has values other than 0 and 1",
                key="text_bert",
                sample=int(np.argmax(bad.any(axis=1))),
                fix="put the attention mask in row 1 (input ids, attention mask, segment ids)",
            )
        return mask.sum(axis=1).astype(np.int32)

    def _check_lengths(self, length, seq_len, key, modality):
        bad = (length < 1) | (length > seq_len)
        if not bad.any():
            return
        i = int(np.argmax(bad))
        shown = int(length[i]) if np.isfinite(length[i]) else length[i]
        if length[i] < 1:
            raise self.error(
                f"length {shown} would make an all-masked {modality} sequence",
                key=key,
                sample=i,
                fix="drop the sample or re-extract its features (every length must be >= 1)",
            )
        raise self.error(
            f"length {shown} is longer than the {modality} sequence ({seq_len} steps)",
            key=key,
            sample=i,
            fix=f"clip the lengths to {seq_len} (as MMSA-FET does) or re-pad the features",
        )

    def _scan_non_finite(self, key, values):
        """Zeroes `-inf` in audio (counted); NaN/inf elsewhere raise or, with
        `nan_to_num`, are zeroed and counted. Returns (values, neg_inf, non_finite)."""
        n = values.shape[0]
        per_sample = max(1, values[0].size) if n else 1
        step = max(1, _SCAN_BLOCK_VALUES // per_sample)
        neg_inf_count, non_finite_count = 0, 0
        for start in range(0, n, step):
            block = values[start : start + step]
            bad = ~np.isfinite(block)
            if not bad.any():
                continue
            if not values.flags.writeable:
                values = values.copy()
                block = values[start : start + step]
            if key == "audio":
                neg_inf = np.isneginf(block)
                neg_inf_count += int(neg_inf.sum())
                block[neg_inf] = 0.0
                bad &= ~neg_inf
                if not bad.any():
                    continue
            if not self.nan_to_num:
                bad_sample = bad.reshape(bad.shape[0], -1).any(axis=1)
                j = int(np.argmax(bad_sample))
                sample_values = block[j][bad[j]]
                kinds = [
                    name
                    for name, found in (
                        ("NaN", np.isnan(sample_values).any()),
                        ("+inf", np.isposinf(sample_values).any()),
                        ("-inf", np.isneginf(sample_values).any()),
                    )
                    if found
                ]
                count = sample_values.size
                raise self.error(
                    f"contains {' and '.join(kinds)} ({count} value{'s' * (count > 1)})",
                    key=key,
                    sample=start + j,
                    fix=_NAN_FIX,
                )
            non_finite_count += int(bad.sum())
            block[bad] = 0.0
        return values, neg_inf_count, non_finite_count
