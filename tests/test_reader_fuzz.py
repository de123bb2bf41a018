"""Fuzzed readers: mutated MMSA files and label.csv files are accepted clean or refused.

Each example takes a valid fake file (tests/fake_mmsa.py), applies a few random mutations
(dropped or renamed keys, other dtypes and shapes, NaN/inf, bad lengths, object arrays,
missing splits, duplicated ids, mangled csv text) and reads it. The only allowed outcomes are
a one-line `DataError` or data that satisfies every promise of the reader: finite float32
features, lengths in [1, padded length], finite labels inside the family's range, and, through
the tf.data pipeline, batches without NaN. `MIDG_FUZZ_EXAMPLES=5000` fuzzes longer.
"""

import csv
import io
import os
import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from midg_keras.config import Config
from midg_keras.constants import LABEL_SCALE, MODALITY_KEYS, SPLITS
from midg_keras.data.errors import DataError
from midg_keras.data.label_csv import join_label_csv, read_label_csv
from midg_keras.data.mmsa import load_mmsa_pickle, mmsa_splits
from midg_keras.data.pipeline import prepare_data
from tests.fake_mmsa import make_fake_mmsa
from tests.test_label_csv import MMSA_COLUMNS, _rows_of

EXAMPLES = int(os.environ.get("MIDG_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 300,
    deadline=None,
    database=None,
    derandomize=not EXAMPLES,  # CI explores the same examples on every run
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# layout -> label family
LAYOUTS = {
    "mosi_unaligned": "mosi",
    "mosi_aligned": "mosi",
    "sims_unaligned": "sims",
    "mmsa_fet": "mosi",
}
FILE_SPLITS = ("train", "valid", "test")
KEYS = (
    "id",
    "raw_text",
    "text",
    "text_bert",
    "audio",
    "vision",
    "audio_lengths",
    "vision_lengths",
    "regression_labels",
    "regression_labels_T",
)
SPECIAL_NUMBERS = (
    np.nan,
    np.inf,
    -np.inf,
    -1,
    0,
    1.5,
    3.0000001,
    1e300,
    -(2**63),
    2**31,
    2**32 + 1,
    2**63 - 1,
    2**70,
    True,
)
scalars = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-4, 4),
)
odd_values = st.one_of(
    st.none(),
    scalars,
    st.text(max_size=4),
    st.binary(max_size=4),
    st.lists(scalars, max_size=4),
    st.lists(st.lists(scalars, max_size=3), max_size=3),  # often ragged
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(
        [
            np.zeros(0),
            np.zeros(()),
            np.zeros((2, 0, 3)),
            np.array([[1 + 2j]]),
            np.array(["a", "b"]),
            np.array([b"\xff\xfe"], dtype=object),
            [[1.0, 2.0], [3.0]],
        ]
    ),
)
DTYPES = ("float16", "float64", "int8", "int64", "uint8", "bool", "complex64", "object", "U3")


# ---------------------------------------------------------------- MMSA mutations


def _split(data, raw):
    """A split dict of `raw` (None when no split is a dict any more)."""
    names = [name for name in raw if isinstance(raw[name], dict) and name != "config"]
    return raw[data.draw(st.sampled_from(names))] if names else None


def _array_key(data, split):
    keys = [key for key in KEYS if key in split]
    return data.draw(st.sampled_from(keys)) if keys else None


def drop_key(data, raw):
    split = _split(data, raw)
    if split and (key := _array_key(data, split)):
        del split[key]


def rename_key(data, raw):
    split = _split(data, raw)
    if split and (key := _array_key(data, split)):
        split[data.draw(st.sampled_from(KEYS + ("Audio", "labels", "")))] = split.pop(key)


def replace_value(data, raw):
    split = _split(data, raw)
    if split and (key := _array_key(data, split)):
        split[key] = data.draw(odd_values)


def change_dtype(data, raw):
    split = _split(data, raw)
    if split and (key := _array_key(data, split)):
        split[key] = np.asarray(split[key]).astype(data.draw(st.sampled_from(DTYPES)))


def change_shape(data, raw):
    split = _split(data, raw)
    if not split or not (key := _array_key(data, split)):
        return
    value = np.asarray(split[key])
    reshape = data.draw(
        st.sampled_from(
            [
                lambda v: v[:1],
                lambda v: v[1:],
                lambda v: np.concatenate([v, v[:1]]),
                lambda v: v[None],
                lambda v: v.reshape(-1),
                lambda v: v[..., None],
                lambda v: v[:, :0],
                lambda v: v[..., :0],
                lambda v: v[:, 1:],
                lambda v: np.swapaxes(v, 1, -1),
                lambda v: v[0],
            ]
        )
    )
    split[key] = reshape(value)


def set_element(data, raw):
    """One value of an array (feature, label, length, mask) set to NaN, inf, huge, ..."""
    split = _split(data, raw)
    if not split or not (key := _array_key(data, split)):
        return
    value = split[key]
    if isinstance(value, list) and value:
        value = list(value)
        index = data.draw(st.integers(0, len(value) - 1))
    elif isinstance(value, np.ndarray) and value.ndim and value.size:
        value = value.copy()
        index = tuple(data.draw(st.integers(0, n - 1)) for n in value.shape)
    else:
        return
    number = data.draw(scalars)
    try:
        value[index] = number
    except (ValueError, TypeError, OverflowError):
        value = value.astype(object)
        value[index] = number
    split[key] = value


def to_object_array(data, raw):
    """Features as MMSA-FET may write them: one array per sample, perhaps ragged or odd."""
    split = _split(data, raw)
    key = data.draw(st.sampled_from(MODALITY_KEYS))
    if not split or not isinstance(split.get(key), np.ndarray) or split[key].ndim != 3:
        return
    if not len(split[key]):
        return
    samples = np.empty(len(split[key]), dtype=object)
    for i, sample in enumerate(split[key]):
        samples[i] = sample
    i = data.draw(st.integers(0, len(samples) - 1))
    samples[i] = data.draw(
        st.sampled_from([samples[i], samples[i][1:], samples[i][:, :1], None, "text", []])
    )
    split[key] = samples if data.draw(st.booleans()) else list(samples)


def break_splits(data, raw):
    name = data.draw(st.sampled_from(FILE_SPLITS))
    action = data.draw(st.sampled_from(["drop", "rename", "list", "empty", "copy"]))
    if not isinstance(raw.get(name), dict):
        return
    if action == "drop":
        del raw[name]
    elif action == "rename":
        raw["validation" if name == "valid" else name.upper()] = raw.pop(name)
    elif action == "list":
        raw[name] = list(raw[name])
    elif action == "empty":
        raw[name] = {key: np.asarray(value)[:0] for key, value in raw[name].items()}
    else:
        raw[name] = raw[data.draw(st.sampled_from([n for n in FILE_SPLITS if n in raw]))]


def duplicate_or_mangle_ids(data, raw):
    split = _split(data, raw)
    if not split or "id" not in split or len(split["id"]) < 2:
        return
    ids = np.array(split["id"], dtype=object)
    ids[1] = data.draw(st.sampled_from([ids[0], b"\xff\xfe", b"ok$_$1", 7, None, ""]))
    split["id"] = ids


MUTATIONS = (
    drop_key,
    rename_key,
    replace_value,
    change_dtype,
    change_shape,
    set_element,
    to_object_array,
    break_splits,
    duplicate_or_mangle_ids,
)


@st.composite
def mutated_files(draw):
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    raw = make_fake_mmsa(layout, sizes=(3, 2, 2), seed=draw(st.integers(0, 3)))
    data = draw(st.data())
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                mutation(data, raw)
            except (AttributeError, IndexError, ValueError, TypeError, OverflowError):
                pass  # the mutation does not apply to what earlier ones left
    return raw, LAYOUTS[layout], draw(st.booleans())


def _assert_one_line(error):
    message = str(error)
    assert message.startswith("DataError: ") and "\n" not in message


def _assert_valid(splits, family):
    """Everything `SplitArrays` promises, for every split."""
    assert set(splits) == set(SPLITS)
    dims = None
    for arrays in splits.values():
        n = len(arrays)
        assert n >= 1 and len(arrays.ids) == len(arrays.raw_text) == n
        assert all(isinstance(x, str) for x in arrays.ids + arrays.raw_text)
        split_dims = {}
        for key in MODALITY_KEYS:
            features = getattr(arrays, key)
            length = getattr(arrays, f"{key}_length")
            assert features.dtype == np.float32 and features.ndim == 3 and len(features) == n
            assert np.isfinite(features).all()
            assert length.dtype == np.int32 and length.shape == (n,)
            assert (length >= 1).all() and (length <= features.shape[1]).all()
            split_dims[key] = features.shape[2]
        assert dims in (None, split_dims)
        dims = split_dims
        for label in [arrays.label, *arrays.unimodal_labels.values()]:
            assert label.dtype == np.float32 and label.shape == (n,)
            assert np.isfinite(label).all()
            assert (np.abs(label) <= LABEL_SCALE[family] + 1e-5).all()
        for example in arrays.examples():
            assert example["text"].shape[0] == example["text_length"]


@FUZZ
@given(mutated_files(), st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_mutated_mmsa_file_is_accepted_clean_or_refused(tmp_path_factory, case, protocol):
    raw, family, nan_to_num = case
    path = tmp_path_factory.getbasetemp() / "fuzzed.pkl"
    path.write_bytes(pickle.dumps(raw, protocol=protocol))
    try:
        splits = load_mmsa_pickle(path, family=family, nan_to_num=nan_to_num)
    except DataError as error:
        _assert_one_line(error)
        event("refused", error.key)
        return
    event("accepted")
    _assert_valid(splits, family)
    for file_split, split in (("train", "train"), ("valid", "validation"), ("test", "test")):
        for modality in ("audio", "vision"):
            lengths = raw.get(file_split, {}).get(f"{modality}_lengths")
            if lengths is not None:  # read as written, not wrapped around by a cast
                np.testing.assert_array_equal(
                    getattr(splits[split], f"{modality}_length"), np.ravel(lengths)
                )


@settings(FUZZ, max_examples=max(EXAMPLES // 10, 20))
@given(mutated_files())
def test_accepted_mutated_file_gives_finite_batches(tmp_path_factory, case):
    raw, family, nan_to_num = case
    path = tmp_path_factory.getbasetemp() / "fuzzed_pipeline.pkl"
    path.write_bytes(pickle.dumps(raw))
    config = Config(source=f"pickle:{path}@{family}", nan_to_num=nan_to_num, batch_size=3)
    try:
        data = prepare_data(config.validate())
    except DataError as error:
        _assert_one_line(error)
        return
    for dataset in (data.train, data.validation, data.test):
        for batch in dataset:
            inputs, label = batch[0], batch[1]
            for key in data.modalities:
                assert np.isfinite(inputs[key].numpy()).all()
                assert inputs[f"{key}_mask"].numpy().any(axis=1).all()
            assert np.isfinite(label.numpy()).all()


_PICKLES = [
    pickle.dumps(make_fake_mmsa("mosi_unaligned", sizes=(2, 1, 1)), protocol=protocol)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1)
]


@FUZZ
@given(st.data())
def test_pickle_with_flipped_bytes_is_accepted_clean_or_refused(tmp_path_factory, data):
    """Corrupt bytes reach the unpickler itself (a corrupt numpy state crashed numpy)."""
    pickled = bytearray(data.draw(st.sampled_from(_PICKLES)))
    for _ in range(data.draw(st.integers(1, 3))):
        pickled[data.draw(st.integers(0, len(pickled) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.getbasetemp() / "flipped.pkl"
    path.write_bytes(bytes(pickled))
    try:
        splits = load_mmsa_pickle(path)
    except DataError as error:
        _assert_one_line(error)
        event("refused")
        return
    event("accepted")
    _assert_valid(splits, "mosi")


def _mutated(file_split, key, make):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2))
    raw[file_split][key] = make(raw[file_split][key])
    return raw


def _set_first(value):
    def make(values):
        values = list(values)
        values[0] = value
        return values

    return make


# Bugs the fuzzer found (each was another exception, or a silently wrong value).
@pytest.mark.parametrize(
    "raw, message",
    [
        pytest.param(
            _mutated("train", "id", _set_first(b"\xff\xfe")),
            "split 'train', key 'id', sample 0: is not UTF-8 text (invalid start byte at byte 0)",
            id="non_utf8_id_was_UnicodeDecodeError",
        ),
        pytest.param(
            _mutated("valid", "raw_text", lambda v: [["a", "b"], ["c"], "d"][: len(v)]),
            "split 'valid', key 'raw_text', sample 0 (id 'ZflplZ3Lcgv$_$1'): is a list, expected "
            "a string",
            id="ragged_strings_were_ValueError",
        ),
        pytest.param(
            _mutated("test", "regression_labels", lambda v: [[0.2, 0.4], [0.6]]),
            "split 'test', key 'regression_labels': is ragged, expected one number per sample",
            id="ragged_labels_were_ValueError",
        ),
        pytest.param(
            {
                **make_fake_mmsa("mosi_unaligned", sizes=(3, 2, 2)),
                "test": {
                    key: np.asarray(value)[:0]
                    for key, value in make_fake_mmsa("mosi_unaligned")["test"].items()
                },
            },
            "split 'test', key 'id': has no samples",
            id="empty_split_was_accepted_then_ValueError_in_max_lengths",
        ),
        pytest.param(
            _mutated("train", "audio_lengths", _set_first(2**32 + 1)),
            "length 4294967297 is longer than the audio sequence (12 steps)",
            id="length_wrapped_around_to_1_and_was_accepted",
        ),
        pytest.param(
            _mutated("train", "vision_lengths", lambda v: np.array([np.inf] + list(v[1:]))),
            "length inf is longer than the vision sequence (16 steps)",
            id="infinite_length_was_reported_as_-2147483648",
        ),
    ],
)
def test_fuzzer_findings_are_one_line_data_errors(raw, message):
    with pytest.raises(DataError) as info:
        mmsa_splits(raw, source="f.pkl")
    _assert_one_line(info.value)
    assert message in str(info.value)


def test_label_beyond_float32_is_refused_without_a_family(tmp_path):
    # Was read as +inf when no family range was checked.
    raw = make_fake_mmsa("mosi_unaligned", sizes=(2, 1, 1))
    rows = _rows_of(raw)
    rows[0]["label"] = "1e300"
    path = tmp_path / "label.csv"
    path.write_text(_csv_text(rows, MMSA_COLUMNS))
    with pytest.raises(DataError, match="key 'label', sample line 2 .*: label is 1e\\+300"):
        read_label_csv(path)


# ---------------------------------------------------------------- label.csv mutations


def _csv_text(rows, columns):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    return out.getvalue()


cells = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e400", "", " ", "3.2", "-1.0", "0x10", "1_0", "none"]),
    st.text(max_size=6),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def mutated_csvs(draw):
    raw = make_fake_mmsa(draw(st.sampled_from(["mosi_unaligned", "sims_unaligned"])), (3, 2, 2))
    family = "sims" if "regression_labels_T" in raw["train"] else "mosi"
    rows = _rows_of(raw, label=lambda y: -y)
    columns = list(MMSA_COLUMNS)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(
            st.sampled_from(["cell", "drop_column", "rename", "duplicate", "drop_row", "shuffle"])
        )
        row = rows[draw(st.integers(0, len(rows) - 1))] if rows else {}
        if action == "cell":
            row[draw(st.sampled_from(columns))] = draw(cells)
        elif action == "drop_column":
            columns.remove(draw(st.sampled_from(columns)))
        elif action == "rename":
            i = draw(st.integers(0, len(columns) - 1))
            columns[i] = draw(st.sampled_from(["Label", "mode ", "clip", columns[i] + "_x"]))
        elif action == "duplicate":
            rows.append(dict(row))
        elif action == "drop_row" and rows:
            rows.remove(row)
        elif action == "shuffle":
            columns = draw(st.permutations(columns))
        if not columns:
            columns = ["video_id"]
    data = _csv_text(rows, columns).encode("utf-8")
    byte_action = draw(st.sampled_from(["none", "truncate", "insert", "bom"]))
    if byte_action == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif byte_action == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    elif byte_action == "bom":
        data = b"\xef\xbb\xbf" + data
    return raw, family, data


@FUZZ
@given(mutated_csvs(), st.booleans())
def test_mutated_label_csv_is_accepted_clean_or_refused(tmp_path_factory, case, check_family):
    raw, family, data = case
    path = tmp_path_factory.getbasetemp() / "fuzzed.csv"
    path.write_bytes(data)
    try:
        table = read_label_csv(path, family=family if check_family else None, skip_modes=("none",))
    except DataError as error:
        _assert_one_line(error)
        event("refused", error.key)
        return
    ids = [sample_id for split in table.values() for sample_id in split.ids]
    assert len(ids) == len(set(ids))
    for split in table.values():
        assert split.labels.dtype == np.float32 and np.isfinite(split.labels).all()
        assert split.texts is None or len(split.texts) == len(split.ids)
        for values in split.unimodal_labels.values():
            assert values.shape == split.labels.shape and np.isfinite(values).all()
    try:
        joined = join_label_csv(mmsa_splits(raw, family=family), path, family=family)
    except DataError as error:
        _assert_one_line(error)
        event("join refused", error.key)
        return
    event("accepted")
    _assert_valid(joined, family)
