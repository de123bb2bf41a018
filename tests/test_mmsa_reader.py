"""MMSA feature pickles: fake files of the real layouts, reading, and every validation path."""

import re

import numpy as np
import pytest

from midg_keras.data.errors import DataError
from midg_keras.data.mmsa import load_mmsa_pickle, mmsa_splits
from tests.fake_mmsa import (
    LAYOUTS,
    STOCK_DIMS,
    STOCK_LENGTHS,
    make_fake_mmsa,
    write_pickle,
)

SPLITS = {"train": "train", "valid": "validation", "test": "test"}
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\$_\$[0-9]+$")


def _family(layout):
    return "sims" if layout.startswith("sims") else "mosi"


def _write(tmp_path, raw, name="features.pkl"):
    return write_pickle(raw, tmp_path / name)


def _load_error(path, family="mosi", **kwargs):
    with pytest.raises(DataError) as info:
        load_mmsa_pickle(path, family=family, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith("DataError: ")
    return message


# ---------------------------------------------------------------- fake files


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fake_layout_matches_mmsa(layout):
    raw = make_fake_mmsa(layout, sizes=(5, 3, 2), seed=3)
    assert ("config" in raw) == (layout == "mmsa_fet")
    aligned = layout.endswith("_aligned")
    for file_split, n in zip(SPLITS, (5, 3, 2)):
        split = raw[file_split]
        assert ("audio_lengths" in split) == (not aligned)
        assert ("classification_labels" in split) == (layout != "mmsa_fet")
        assert ("regression_labels_T" in split) == layout.startswith("sims")
        assert all(ID_PATTERN.match(sample_id) for sample_id in split["id"])
        assert split["text_bert"].shape == (n, 3, split["text"].shape[1])
        mask = split["text_bert"][:, 1, :]
        text_length = mask.sum(axis=1).astype(int)
        token_ids = split["text_bert"][:, 0, :]
        assert np.all(token_ids[:, 0] == 101)
        assert np.all(token_ids[np.arange(n), text_length - 1] == 102)
        assert np.all(token_ids[mask == 0] == 0)
        for modality in ("audio", "vision"):
            values = split[modality]
            length = split.get(f"{modality}_lengths", text_length)
            steps = np.arange(values.shape[1])[None, :]
            assert np.all(values[steps >= np.asarray(length)[:, None]] == 0)
        if layout.startswith("mosi"):
            assert np.isneginf(split["audio"]).any()
        if not aligned:
            expected_type = np.ndarray if layout == "mmsa_fet" else list
            assert isinstance(split["audio_lengths"], expected_type)
    again = make_fake_mmsa(layout, sizes=(5, 3, 2), seed=3)
    np.testing.assert_array_equal(again["test"]["audio"], raw["test"]["audio"])


@pytest.mark.parametrize("layout", ["mosei_unaligned", "sims_unaligned", "mosi_aligned"])
def test_fake_stock_shapes(layout):
    raw = make_fake_mmsa(
        layout, sizes=(2, 1, 1), dims=STOCK_DIMS[layout], lengths=STOCK_LENGTHS[layout]
    )
    for modality in ("text", "audio", "vision"):
        expected = (2, STOCK_LENGTHS[layout][modality], STOCK_DIMS[layout][modality])
        assert raw["train"][modality].shape == expected


# ---------------------------------------------------------------- accepted files


def test_reads_unaligned_mosi(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(8, 4, 4))
    raw["train"]["regression_labels"][:2] = [3.0, -3.0]  # the range is inclusive
    expected_neg_inf = {s: int(np.isneginf(raw[s]["audio"]).sum()) for s in SPLITS}
    splits = load_mmsa_pickle(_write(tmp_path, raw), family="mosi")
    assert set(splits) == {"train", "validation", "test"}
    for file_split, split in SPLITS.items():
        source, arrays = raw[file_split], splits[split]
        assert len(arrays) == len(source["id"])
        assert arrays.ids == list(source["id"])
        assert arrays.raw_text == list(source["raw_text"])
        for modality in ("text", "audio", "vision"):
            assert getattr(arrays, modality).dtype == np.float32
            assert getattr(arrays, f"{modality}_length").dtype == np.int32
        np.testing.assert_array_equal(arrays.audio_length, source["audio_lengths"])
        np.testing.assert_array_equal(arrays.vision_length, source["vision_lengths"])
        np.testing.assert_array_equal(arrays.text_length, source["text_bert"][:, 1].sum(axis=1))
        np.testing.assert_array_equal(arrays.label, source["regression_labels"])
        assert arrays.unimodal_labels == {}
        assert expected_neg_inf[file_split] > 0
        assert arrays.fixed_neg_inf == expected_neg_inf[file_split]
        assert np.isfinite(arrays.audio).all()
        neg_inf = np.isneginf(source["audio"])
        assert np.all(arrays.audio[neg_inf] == 0)
        np.testing.assert_array_equal(arrays.audio[~neg_inf], source["audio"][~neg_inf])


@pytest.mark.parametrize("layout", ["mosi_aligned", "mosei_aligned"])
def test_aligned_lengths_follow_text(tmp_path, layout):
    raw = make_fake_mmsa(layout)
    splits = load_mmsa_pickle(_write(tmp_path, raw), family="mosei")
    for arrays in splits.values():
        assert arrays.text_length.min() < arrays.text.shape[1]  # some padding exists
        np.testing.assert_array_equal(arrays.audio_length, arrays.text_length)
        np.testing.assert_array_equal(arrays.vision_length, arrays.text_length)


def test_aligned_with_other_sequence_length_uses_full_length(tmp_path):
    raw = make_fake_mmsa("mosi_aligned", lengths={"text": 6, "audio": 9, "vision": 7})
    arrays = load_mmsa_pickle(_write(tmp_path, raw))["train"]
    assert set(arrays.audio_length) == {9} and set(arrays.vision_length) == {7}


def test_text_without_text_bert_uses_full_length(tmp_path):
    raw = make_fake_mmsa("mosei_unaligned")
    for file_split in SPLITS:
        del raw[file_split]["text_bert"]
    arrays = load_mmsa_pickle(_write(tmp_path, raw), family="mosei")["test"]
    assert set(arrays.text_length) == {arrays.text.shape[1]}


def test_reads_sims_unimodal_labels(tmp_path):
    raw = make_fake_mmsa("sims_unaligned")
    splits = load_mmsa_pickle(_write(tmp_path, raw), family="sims")
    for file_split, split in SPLITS.items():
        unimodal = splits[split].unimodal_labels
        assert set(unimodal) == {"label_t", "label_a", "label_v"}
        for letter in "TAV":
            np.testing.assert_array_equal(
                unimodal[f"label_{letter.lower()}"], raw[file_split][f"regression_labels_{letter}"]
            )
    assert splits["train"].ids[0] == "video_0001$_$0001"


def test_reads_mmsa_fet_output(tmp_path):
    raw = make_fake_mmsa("mmsa_fet")
    assert raw["train"]["audio"].dtype == np.float64
    splits = load_mmsa_pickle(_write(tmp_path, raw), family="mosi")
    arrays = splits["validation"]
    assert arrays.audio.dtype == np.float32
    np.testing.assert_allclose(arrays.audio, raw["valid"]["audio"], rtol=1e-6)
    np.testing.assert_array_equal(arrays.vision_length, raw["valid"]["vision_lengths"])
    assert arrays.ids == [str(x) for x in raw["valid"]["id"]]


def test_in_memory_float32_arrays_are_not_copied():
    raw = make_fake_mmsa("mosei_unaligned")
    raw["validation"] = raw.pop("valid")  # the spelled-out split name is accepted too
    splits = mmsa_splits(raw, family="mosei", source="memory")
    assert splits["train"].vision is raw["train"]["vision"]
    assert splits["validation"].audio is raw["validation"]["audio"]


def test_per_sample_arrays_of_equal_shape_are_stacked(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned")
    audio = raw["train"]["audio"].copy()
    raw["train"]["audio"] = list(raw["train"]["audio"])
    arrays = load_mmsa_pickle(_write(tmp_path, raw))["train"]
    np.testing.assert_array_equal(arrays.audio, np.where(np.isneginf(audio), 0, audio))


@pytest.mark.parametrize("layout", ["mosi_unaligned", "sims_unaligned"])
def test_examples_are_trimmed_to_lengths(tmp_path, layout):
    raw = make_fake_mmsa(layout)
    arrays = load_mmsa_pickle(_write(tmp_path, raw), family=_family(layout))["test"]
    examples = list(arrays.examples())
    assert len(examples) == len(arrays)
    unimodal = {"label_t", "label_a", "label_v"} if layout.startswith("sims") else set()
    for i, example in enumerate(examples):
        assert (
            set(example)
            == {
                "id",
                "raw_text",
                "text",
                "audio",
                "vision",
                "label",
                "text_length",
                "audio_length",
                "vision_length",
            }
            | unimodal
        )
        assert example["id"] == raw["test"]["id"][i]
        for modality in ("text", "audio", "vision"):
            length = example[f"{modality}_length"]
            assert length.dtype == np.int32
            assert length == getattr(arrays, f"{modality}_length")[i]
            assert example[modality].shape == (length, getattr(arrays, modality).shape[2])
        np.testing.assert_array_equal(
            example["vision"], raw["test"]["vision"][i, : len(example["vision"])]
        )
        assert example["label"] == np.float32(raw["test"]["regression_labels"][i])
    assert any(ex["audio_length"] < arrays.audio.shape[1] for ex in examples)


def test_nan_to_num_zeroes_and_counts(tmp_path):
    raw = make_fake_mmsa("mosei_unaligned")
    raw["train"]["vision"][4, 0, 2] = np.nan
    raw["train"]["text"][1, 3, 0] = np.inf
    raw["train"]["text"][2, 3, 0] = -np.inf
    path = _write(tmp_path, raw)
    assert "key 'text', sample 1" in _load_error(path, family="mosei")
    arrays = load_mmsa_pickle(path, family="mosei", nan_to_num=True)["train"]
    assert arrays.fixed_non_finite == 3 and arrays.fixed_neg_inf == 0
    assert arrays.vision[4, 0, 2] == 0 and arrays.text[1, 3, 0] == 0 and arrays.text[2, 3, 0] == 0
    assert np.isfinite(arrays.text).all() and np.isfinite(arrays.vision).all()


# ---------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path):
    message = _load_error(tmp_path / "nowhere.pkl")
    assert "nowhere.pkl: file not found" in message and "Fix: check the path" in message


def test_truncated_file(tmp_path):
    path = _write(tmp_path, make_fake_mmsa("mosi_unaligned"))
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    message = _load_error(path)
    assert f"{path}: is truncated or not a pickle ({len(data) // 2} bytes" in message
    assert "Fix: download or copy the file again" in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    assert "empty.pkl: is empty (0 bytes" in _load_error(path)


def test_not_a_pickle(tmp_path):
    path = tmp_path / "label.csv"
    path.write_text("video_id,clip_id,label\n")
    assert "label.csv: is truncated or not a pickle" in _load_error(path)


def test_pickle_of_a_list(tmp_path):
    message = _load_error(_write(tmp_path, [1, 2], name="list.pkl"))
    assert "list.pkl: holds a list, expected a dict with splits 'train', 'valid', 'test'" in message


def test_trusted_pickle_needing_a_missing_module(tmp_path):
    path = tmp_path / "torch_tensors.pkl"
    path.write_bytes(b"cno_such_module_xyz\nTensor\n.")  # protocol-0 global reference
    message = _load_error(path, trust_pickle=True)
    assert "needs Python module 'no_such_module_xyz'" in message
    assert "return_type='np'" in message


def test_unknown_family(tmp_path):
    path = _write(tmp_path, make_fake_mmsa("mosi_unaligned"))
    message = _load_error(path, family="iemocap")
    assert "unknown label family 'iemocap'" in message and "'sims'" in message


# ---------------------------------------------------------------- split-level errors


def _del(file_split, key):
    def mutate(raw):
        del raw[file_split][key]

    return mutate


def _set(file_split, key, index, value):
    def mutate(raw):
        raw[file_split][key][index] = value

    return mutate


def _replace(file_split, key, make):
    def mutate(raw):
        raw[file_split][key] = make(raw[file_split][key])

    return mutate


def _all_labels(value, index, bad):
    def mutate(raw):
        labels = raw["train"]["regression_labels"]
        labels[:] = value
        labels[index] = bad

    return mutate


def _ragged(values):
    samples = list(values)
    samples[2] = samples[2][:-1]
    return samples


def _drop_valid(raw):
    del raw["valid"]


def _split_list(raw):
    raw["train"] = [1, 2]


def _wider_test_audio(raw):
    audio = raw["test"]["audio"]
    raw["test"]["audio"] = np.concatenate([audio, audio[:, :, :1]], axis=2)


ERROR_CASES = [
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _drop_valid,
        [
            "split 'valid': missing (the file has top-level keys 'train', 'test')",
            "Fix: MMSA files have",
        ],
        id="missing_split",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _split_list,
        ["split 'train': is a list, expected a dict of arrays", "Fix:"],
        id="split_not_a_dict",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _del("valid", "vision"),
        [
            "split 'valid', key 'vision': missing (the split has keys 'id', 'raw_text', 'audio'",
            "Fix: write the split in MMSA layout with keys id, raw_text, text, audio, vision",
        ],
        id="missing_key",
    ),
    pytest.param(
        "sims_unaligned",
        "sims",
        _del("test", "regression_labels_T"),
        [
            "split 'test', key 'regression_labels_T': missing",
            "Fix: SIMS files carry unimodal labels",
            "`@mosi`",
        ],
        id="sims_missing_unimodal_labels",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _wider_test_audio,
        [
            "split 'test', key 'audio': feature dim 6 differs from split 'train' (5)",
            "Fix: extract all splits with the same",
        ],
        id="dims_differ_between_splits",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("train", "vision", _ragged),
        [
            "split 'train', key 'vision', sample 2 (id '",
            "is ragged: shape (15, 20), but sample 0 has (16, 20)",
            "Fix: zero-pad every sample",
        ],
        id="ragged",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("valid", "audio", lambda a: a[:, :, 0]),
        [
            "split 'valid', key 'audio': has shape (4, 12), expected rank 3",
            "Fix: store features as one (N, L, D) array",
        ],
        id="wrong_rank",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("train", "audio", lambda a: a[:-1]),
        ["split 'train', key 'audio': has 7 samples but key 'id' has 8", "Fix: write every key"],
        id="sample_count_mismatch",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("train", "vision_lengths", lambda a: a[:-1]),
        ["split 'train', key 'vision_lengths': has 7 samples but key 'id' has 8"],
        id="length_count_mismatch",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _set("valid", "vision_lengths", 1, 17),
        [
            "split 'valid', key 'vision_lengths', sample 1 (id '",
            "length 17 is longer than the vision sequence (16 steps)",
            "Fix: clip the lengths to 16",
        ],
        id="length_too_long",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _set("test", "audio_lengths", 2, 0),
        [
            "split 'test', key 'audio_lengths', sample 2 (id '",
            "length 0 would make an all-masked audio sequence",
            "Fix: drop the sample",
        ],
        id="length_zero",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("train", "audio_lengths", lambda a: np.asarray(a) + 0.5),
        [
            "split 'train', key 'audio_lengths', sample 0 (id '",
            "is not a whole number",
            "Fix: store lengths as integers",
        ],
        id="fractional_length",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _set("train", "text_bert", (3, 1), 0.0),
        [
            "split 'train', key 'text_bert', sample 3 (id '",
            "length 0 would make an all-masked text sequence",
        ],
        id="empty_attention_mask",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _replace("train", "text_bert", lambda a: a[:, :2]),
        ["split 'train', key 'text_bert': has shape (8, 2, 8), expected (N, 3, L)"],
        id="text_bert_rows",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _set("valid", "regression_labels", 2, np.nan),
        [
            "split 'valid', key 'regression_labels', sample 2 (id '",
            "label is NaN",
            "Fix: drop the sample or fill in its label",
        ],
        id="nan_label",
    ),
    pytest.param(
        "sims_unaligned",
        "sims",
        _set("train", "regression_labels_V", 1, np.nan),
        [
            "split 'train', key 'regression_labels_V', sample 1 (id 'video_0001$_$0002')",
            "label is NaN",
        ],
        id="nan_unimodal_label",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _all_labels(1.0, 5, 3.5),
        [
            "split 'train', key 'regression_labels', sample 5 (id '",
            "label 3.5 is outside [-3, 3], the range of the assumed family 'mosi'",
            "`@sims`",
        ],
        id="label_outside_mosi_range",
    ),
    pytest.param(
        "sims_unaligned",
        "sims",
        _all_labels(0.4, 3, -2.4),
        [
            "split 'train', key 'regression_labels', sample 3 (id '",
            "label -2.4 is outside [-1, 1], the range of the assumed family 'sims'",
            "Fix: if this is a MOSI/MOSEI file",
            "`@mosi`",
        ],
        id="label_outside_sims_range",
    ),
    pytest.param(
        "mosei_unaligned",
        "mosei",
        _set("train", "vision", (4, 0, 2), np.nan),
        [
            "split 'train', key 'vision', sample 4 (id '",
            "contains NaN (1 value)",
            "Fix: clean the file, or pass --nan_to_num",
        ],
        id="nan_feature",
    ),
    pytest.param(
        "mosei_unaligned",
        "mosei",
        _set("test", "text", (1, 0, 0), -np.inf),
        ["split 'test', key 'text', sample 1 (id '", "contains -inf (1 value)", "--nan_to_num"],
        id="neg_inf_outside_audio",
    ),
    pytest.param(
        "mosi_unaligned",
        "mosi",
        _set("valid", "audio", (3, 0, 0), np.inf),
        ["split 'valid', key 'audio', sample 3 (id '", "contains +inf (1 value)", "--nan_to_num"],
        id="pos_inf_in_audio",
    ),
]


@pytest.mark.parametrize("layout, family, mutate, fragments", ERROR_CASES)
def test_validation_error(tmp_path, layout, family, mutate, fragments):
    raw = make_fake_mmsa(layout, sizes=(8, 4, 4))
    mutate(raw)
    path = _write(tmp_path, raw, name=f"{layout}.pkl")
    message = _load_error(path, family=family)
    assert message.startswith(f"DataError: {path}: ")
    assert "Fix: " in message
    for fragment in fragments:
        assert fragment in message
