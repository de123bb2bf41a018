"""MMSA label.csv: the real MOSI and SIMS v2 label files, bad csvs, and the join with features."""

import csv

import numpy as np
import pytest

from midg_keras.config import Config, ConfigError
from midg_keras.data.errors import DataError
from midg_keras.data.label_csv import join_label_csv, read_label_csv
from midg_keras.data.mmsa import load_mmsa_pickle
from midg_keras.data.pipeline import prepare_data
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.real_data import real_data_file
from tests.test_cli import run_cli

MOSI_CSV = "mosi/mosi_label_mmsa_format_DERIVED.csv"
SIMS_CSV = "simsv2/simsv2s_labels_DERIVED.csv"
MMSA_COLUMNS = [
    "video_id",
    "clip_id",
    "text",
    "label",
    "label_T",
    "label_A",
    "label_V",
    "annotation",
    "mode",
]
FILE_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def _write_csv(path, rows, columns=MMSA_COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(column, "") for column in columns])
    return str(path)


def _rows_of(raw, label=lambda y: y):
    """label.csv rows for the clips of a fake MMSA dict, with labels passed through `label`."""
    rows = []
    for mode in FILE_SPLITS:
        split = raw[mode]
        for i, sample_id in enumerate(split["id"]):
            video_id, clip_id = str(sample_id).split("$_$")
            row = {
                "video_id": video_id,
                "clip_id": clip_id,
                "text": f"csv text {sample_id}",
                "label": f"{label(float(split['regression_labels'][i])):.1f}",
                "mode": mode,
                "annotation": "Neutral",
            }
            for letter in "TAV":
                if f"regression_labels_{letter}" in split:
                    row[f"label_{letter}"] = f"{-split[f'regression_labels_{letter}'][i]:.1f}"
            rows.append(row)
    return rows


def _csv_error(path, **kwargs):
    with pytest.raises(DataError) as info:
        read_label_csv(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"DataError: {path}: ")
    assert "Fix: " in message
    return message


# ---------------------------------------------------------------- real files


def test_real_mosi_label_csv():
    splits = read_label_csv(real_data_file(MOSI_CSV), family="mosi")
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 1284,
        "validation": 229,
        "test": 686,
    }
    train = splits["train"]
    assert train.ids[:3] == ["03bSnISJMiM$_$11", "03bSnISJMiM$_$10", "03bSnISJMiM$_$13"]
    assert splits["validation"].ids[0] == "WKA5OygbEKI$_$20"
    assert train.texts[0] == "A LOT OF SAD PARTS"
    assert train.labels[0] == np.float32(-0.5)
    assert train.unimodal_labels == {}  # label_T/A/V are empty in MOSI
    labels = np.concatenate([rows.labels for rows in splits.values()])
    assert labels.dtype == np.float32 and labels.min() == -3.0 and labels.max() == 3.0
    assert all("$_$" in sample_id for rows in splits.values() for sample_id in rows.ids)


def test_real_sims_v2_label_csv_without_text():
    splits = read_label_csv(real_data_file(SIMS_CSV), family="sims")
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 2722,
        "validation": 647,
        "test": 1034,
    }
    train = splits["train"]
    assert train.texts is None
    assert train.ids[:2] == ["video_0001$_$0001", "video_0001$_$0002"]  # leading zeros kept
    assert set(train.unimodal_labels) == {"label_t", "label_a", "label_v"}
    np.testing.assert_allclose(train.unimodal_labels["label_a"][:2], [-1.0, 0.8])
    for rows in splits.values():
        for values in [rows.labels, *rows.unimodal_labels.values()]:
            assert len(values) == len(rows) and np.abs(values).max() <= 1.0


# ---------------------------------------------------------------- layout variants and errors


def test_columns_in_any_order_with_extra_columns(tmp_path):
    rows = [
        {
            "video_id": "v1",
            "clip_id": "3",
            "text": "a, quoted text",
            "label": "1.4",
            "mode": "train",
            "start": "1.0",
        },
        {
            "video_id": "v1",
            "clip_id": "4",
            "text": "b",
            "label": "-3",
            "mode": "valid",
            "start": "2.0",
        },
        {
            "video_id": "v2",
            "clip_id": "1",
            "text": "c",
            "label": "0",
            "mode": "test",
            "start": "3.0",
        },
    ]
    columns = ["mode", "start", "label", "clip_id", "text", "video_id", "annotation"]
    splits = read_label_csv(_write_csv(tmp_path / "label.csv", rows, columns))
    assert splits["train"].ids == ["v1$_$3"] and splits["train"].texts == ["a, quoted text"]
    assert splits["validation"].labels.tolist() == [-3.0]
    assert splits["test"].ids == ["v2$_$1"]
    assert splits["test"].unimodal_labels == {}


def test_skip_modes(tmp_path):
    rows = [
        {"video_id": "v", "clip_id": "1", "label": "1", "mode": "train"},
        {"video_id": "v", "clip_id": "2", "label": "1", "mode": "none"},
    ]
    path = _write_csv(tmp_path / "label.csv", rows)
    message = _csv_error(path)
    assert "key 'mode', sample line 3 (id 'v$_$2'): unknown mode 'none'" in message
    assert "skip_modes=('none',)" in message
    assert len(read_label_csv(path, skip_modes=("none",))["train"]) == 1


def _good_rows():
    return [
        {
            "video_id": "v",
            "clip_id": "1",
            "text": "x",
            "label": "1.2",
            "mode": "train",
            "label_T": "1",
            "label_A": "0.5",
            "label_V": "0",
        },
        {
            "video_id": "v",
            "clip_id": "2",
            "text": "y",
            "label": "-0.4",
            "mode": "test",
            "label_T": "1",
            "label_A": "0.5",
            "label_V": "0",
        },
    ]


def _with(index, **cells):
    rows = _good_rows()
    rows[index].update(cells)
    return rows


CSV_ERRORS = [
    pytest.param(
        _good_rows(),
        [c for c in MMSA_COLUMNS if c != "label"],
        None,
        [
            "key 'label': missing column (the header has video_id, clip_id, text, label_T",
            "Fix: write the MMSA columns",
        ],
        id="missing_column",
    ),
    pytest.param(
        _with(1, label="positive"),
        MMSA_COLUMNS,
        None,
        [
            "key 'label', sample line 3 (id 'v$_$2'): 'positive' is not a number",
            "Fix: write the label as a number",
        ],
        id="non_numeric_label",
    ),
    pytest.param(
        _with(0, label_A="n/a"),
        MMSA_COLUMNS,
        None,
        ["key 'label_A', sample line 2 (id 'v$_$1'): 'n/a' is not a number"],
        id="non_numeric_unimodal_label",
    ),
    pytest.param(
        _with(0, label="nan"),
        MMSA_COLUMNS,
        None,
        ["key 'label', sample line 2 (id 'v$_$1'): label is nan", "Fix: fill in the label"],
        id="nan_label",
    ),
    pytest.param(
        _with(1, mode="dev"),
        MMSA_COLUMNS,
        None,
        [
            "key 'mode', sample line 3 (id 'v$_$2'): unknown mode 'dev'",
            "Fix: use train, valid or test",
        ],
        id="unknown_mode",
    ),
    pytest.param(
        _with(1, clip_id="1"),
        MMSA_COLUMNS,
        None,
        [
            "key 'clip_id', sample line 3 (id 'v$_$1'): duplicate id, first on line 2",
            "Fix: keep one row per clip",
        ],
        id="duplicate_id",
    ),
    pytest.param(
        _with(1, label_V=""),
        MMSA_COLUMNS,
        None,
        [
            "key 'label_V', sample line 3 (id 'v$_$2'): empty on 1 of 2 rows",
            "Fix: fill label_V on every row",
        ],
        id="unimodal_label_partly_empty",
    ),
    pytest.param(
        _good_rows(),
        MMSA_COLUMNS,
        "sims",
        [
            "key 'label', sample line 2 (id 'v$_$1'): label 1.2 is outside [-1, 1], the range of the assumed family 'sims'",
            "`@mosi`",
        ],
        id="label_outside_family_range",
    ),
]


@pytest.mark.parametrize("rows, columns, family, fragments", CSV_ERRORS)
def test_bad_csv(tmp_path, rows, columns, family, fragments):
    path = _write_csv(tmp_path / "label.csv", rows, columns)
    message = _csv_error(path, family=family)
    for fragment in fragments:
        assert fragment in message


def test_missing_csv(tmp_path):
    assert "nowhere.csv: file not found" in _csv_error(str(tmp_path / "nowhere.csv"))


def test_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "label.csv"
    path.write_bytes(b"video_id,clip_id,label,mode\nv,1,\xff\xfe,train\n")
    assert "is not UTF-8 text" in _csv_error(str(path))


# ---------------------------------------------------------------- join with features


def test_join_replaces_labels_and_text_in_feature_order(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(6, 3, 3))
    splits = load_mmsa_pickle(write_pickle(raw, tmp_path / "f.pkl"))
    rows = _rows_of(raw, label=lambda y: -y)
    rows.reverse()  # the csv order must not matter
    joined = join_label_csv(splits, _write_csv(tmp_path / "label.csv", rows), family="mosi")
    for file_split, split in FILE_SPLITS.items():
        before, after = splits[split], joined[split]
        assert after.ids == before.ids
        np.testing.assert_allclose(
            after.label, -np.round(raw[file_split]["regression_labels"], 1), atol=1e-6
        )
        assert after.raw_text == [f"csv text {sample_id}" for sample_id in before.ids]
        assert after.audio is before.audio  # features are not copied
        assert after.unimodal_labels == {}
        assert before.raw_text == list(raw[file_split]["raw_text"])  # inputs are untouched


def test_join_takes_sims_unimodal_labels_and_keeps_text_without_text_column(tmp_path):
    raw = make_fake_mmsa("sims_unaligned")
    splits = load_mmsa_pickle(write_pickle(raw, tmp_path / "f.pkl"), family="sims")
    columns = [c for c in MMSA_COLUMNS if c != "text"]
    joined = join_label_csv(splits, _write_csv(tmp_path / "label.csv", _rows_of(raw), columns))
    after = joined["test"]
    assert after.raw_text == splits["test"].raw_text
    np.testing.assert_allclose(
        after.unimodal_labels["label_v"], -raw["test"]["regression_labels_V"], atol=1e-6
    )


def test_join_reports_ids_in_only_one_of_features_and_csv(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(6, 3, 3))
    splits = load_mmsa_pickle(write_pickle(raw, tmp_path / "f.pkl"))
    rows = _rows_of(raw)
    moved = next(row for row in rows if row["mode"] == "train")
    moved["mode"] = "test"  # a train clip the csv puts in test
    rows.append({"video_id": "extraVideo", "clip_id": "9", "label": "0", "mode": "test"})
    path = _write_csv(tmp_path / "label.csv", rows)
    moved_id = f"{moved['video_id']}$_${moved['clip_id']}"
    with pytest.raises(DataError) as info:
        join_label_csv(splits, path)
    message = str(info.value)
    assert message.startswith(f"DataError: {path}: split 'train', key 'id': ")
    assert (
        f"1 feature ids are not in the csv (e.g. '{moved_id}' [in the csv's 'test' split])"
        in message
    )
    assert "Fix: use the label.csv of the same dataset" in message
    with pytest.raises(DataError) as info:
        join_label_csv({"test": splits["test"]}, path)
    message = str(info.value)
    assert "split 'test', key 'id': 2 csv ids have no features (e.g. " in message
    assert "'extraVideo$_$9'" in message and "allow_extra_rows=True" in message
    joined = join_label_csv({"test": splits["test"]}, path, allow_extra_rows=True)
    assert joined["test"].ids == splits["test"].ids


# ---------------------------------------------------------------- --label_csv


def test_label_csv_flag_replaces_the_source_labels_in_the_pipeline(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(6, 3, 3))
    pickle_path = write_pickle(raw, tmp_path / "f.pkl")
    rows = _rows_of(raw, label=lambda y: -y)
    rows.append({"video_id": "noFold", "clip_id": "1", "label": "0.4", "mode": "none"})
    csv_path = _write_csv(tmp_path / "label.csv", rows)
    config = Config(source=f"pickle:{pickle_path}", label_csv=csv_path, batch_size=2).validate()
    data = prepare_data(config)
    labels = np.concatenate([label.numpy() for _, label in data.validation])
    expected = -np.round(raw["valid"]["regression_labels"], 1) / 3.0  # the common scale
    np.testing.assert_allclose(labels, expected, atol=1e-6)
    # Targets keep their own labels: the in-domain test split is the csv's, as a source split.
    labels = np.concatenate([batch[1].numpy() for batch in data.test])
    np.testing.assert_allclose(
        labels, -np.round(raw["test"]["regression_labels"], 1) / 3.0, atol=1e-6
    )


def test_label_csv_needs_one_pickle_source():
    with pytest.raises(ConfigError, match="--label_csv"):
        Config(source="synthetic/domain_a", label_csv="label.csv").validate()
    with pytest.raises(ConfigError, match="--label_csv"):
        Config(source="pickle:a.pkl,pickle:b.pkl", label_csv="label.csv").validate()


def test_bad_label_csv_exits_2_with_one_line_naming_the_file(tmp_path):
    raw = make_fake_mmsa("mosi_unaligned", sizes=(6, 3, 3))
    pickle_path = write_pickle(raw, tmp_path / "f.pkl")
    rows = [row for row in _rows_of(raw) if row["mode"] != "valid"]  # no validation ids
    csv_path = _write_csv(tmp_path / "label.csv", rows)
    result = run_cli("--mode=inspect", f"--source=pickle:{pickle_path}", f"--label_csv={csv_path}")
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.stderr
    assert (
        f"{csv_path}: split 'validation', key 'id': 3 feature ids are not in the csv"
        in (error_lines[0])
    )
    assert "Traceback" not in result.stderr
