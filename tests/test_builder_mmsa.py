"""What the MMSA builders (mosi, mosei, sims) yield, record and refuse, via `tfds.builder`."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import datasets  # noqa: F401  (registers the builders)
from midg_keras.data.errors import DataError
from midg_keras.data.mmsa import load_mmsa_pickle
from tests.fake_mmsa import STOCK_DIMS, make_fake_mmsa, write_pickle

tfds.disable_progress_bar()

SIZES = (3, 2, 2)
# builder/config -> (fake_mmsa layout, label family, padded lengths)
CASES = {
    "mosi/unaligned_50": ("mosi_unaligned", "mosi", {"text": 5, "audio": 7, "vision": 6}),
    "mosi/aligned_50": ("mosi_aligned", "mosi", {"text": 5}),
    "mosei/unaligned_50": ("mosei_unaligned", "mosei", {"text": 4, "audio": 6, "vision": 5}),
    "mosei/aligned_50": ("mosei_aligned", "mosei", {"text": 4}),
    "sims/unaligned_39": ("sims_unaligned", "sims", {"text": 4, "audio": 6, "vision": 3}),
}
SPLITS = ("train", "validation", "test")


def _fake(layout, lengths, seed=0):
    return make_fake_mmsa(layout, sizes=SIZES, seed=seed, dims=STOCK_DIMS[layout], lengths=lengths)


def _prepare(name, tmp_path, manual_dir):
    builder = tfds.builder(name, data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


@pytest.mark.parametrize("name", sorted(CASES))
def test_examples_match_loader_trimmed_with_documented_features(name, tmp_path):
    layout, family, lengths = CASES[name]
    config = name.split("/")[1]
    manual = tmp_path / "manual"
    write_pickle(_fake(layout, lengths), manual / f"{config}.pkl")
    builder = _prepare(name, tmp_path, manual)

    expected = load_mmsa_pickle(manual / f"{config}.pkl", family=family)
    dims = STOCK_DIMS[layout]
    unimodal = ("label_t", "label_a", "label_v") if family == "sims" else ()
    for split in SPLITS:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        spec = ds.element_spec
        assert set(spec) == {
            "id",
            "raw_text",
            "label",
            "text",
            "audio",
            "vision",
            "text_length",
            "audio_length",
            "vision_length",
            *unimodal,
        }
        for modality in ("text", "audio", "vision"):
            assert spec[modality].dtype == "float32"
            assert spec[modality].shape.as_list() == [None, dims[modality]]
            assert spec[f"{modality}_length"].dtype == "int32"
        for key in ("label", *unimodal):
            assert spec[key].dtype == "float32"
        assert spec["id"].dtype == "string" and spec["raw_text"].dtype == "string"

        got = {ex["id"].decode(): ex for ex in tfds.as_numpy(ds)}
        want = list(expected[split].examples())
        assert len(got) == len(want) == builder.info.splits[split].num_examples
        for example in want:
            row = got[example["id"]]
            assert row["raw_text"].decode() == example["raw_text"]
            for modality in ("text", "audio", "vision"):
                assert row[modality].shape[0] == row[f"{modality}_length"] >= 1
                np.testing.assert_array_equal(row[modality], example[modality])
            for key in ("label", *unimodal):
                assert row[key] == example[key]


def test_neg_inf_counts_are_recorded_in_metadata_and_survive_reload(tmp_path):
    manual = tmp_path / "manual"
    write_pickle(_fake(*CASES["mosi/unaligned_50"][::2]), manual / "unaligned_50.pkl")
    builder = _prepare("mosi/unaligned_50", tmp_path, manual)
    counts = {s: a.fixed_neg_inf for s, a in load_mmsa_pickle(manual / "unaligned_50.pkl").items()}
    assert sum(counts.values()) > 0  # fake MOSI audio carries COVAREP-style -inf.
    assert builder.info.metadata["fixed_neg_inf"] == counts

    reloaded = tfds.builder("mosi/unaligned_50", data_dir=str(tmp_path / "data"))
    assert reloaded.info.metadata["fixed_neg_inf"] == counts
    assert reloaded.info.metadata["source_file"] == "unaligned_50.pkl"
    assert reloaded.info.metadata["max_lengths"]["audio"] == 7  # first fake clip fills it
    audio = np.concatenate(
        [ex["audio"] for s in SPLITS for ex in tfds.as_numpy(reloaded.as_dataset(split=s))]
    )
    assert np.isfinite(audio).all()


def test_missing_manual_file_names_file_and_where_to_get_it(tmp_path):
    manual = tmp_path / "manual"
    write_pickle(_fake(*CASES["mosi/aligned_50"][::2]), manual / "aligned_50.pkl")
    with pytest.raises(DataError) as error:
        _prepare("mosi/unaligned_50", tmp_path, manual)
    message = str(error.value)
    assert "unaligned_50.pkl" in message and "MOSI/Processed/unaligned_50.pkl" in message
    assert "['aligned_50.pkl']" in message
    assert "\n" not in message


def test_missing_manual_dir_is_a_data_error_not_a_tfds_assertion(tmp_path):
    expected = (
        r"sims/unaligned_39 needs unaligned_39.pkl: Manual directory .*nowhere does not exist"
    )
    with pytest.raises(DataError, match=expected + ".*Fix: download"):
        _prepare("sims/unaligned_39", tmp_path, tmp_path / "nowhere")


def test_instructions_give_file_names_sources_and_checksums():
    sims = tfds.builder_cls("sims").MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "c9e20c13ec0454d98bb9c1e520e490c75146bfa2dfeeea78d84de047dbdd442f" in sims
    assert "1228189774 bytes" in sims and "<manual_dir>/unaligned_39.pkl" in sims
    mosei = tfds.builder_cls("mosei").MANUAL_DOWNLOAD_INSTRUCTIONS
    assert (
        "MOSEI/Processed/aligned_50.pkl" in mosei
        and "45eccfb748a87c80ecab9bfac29582e7b1466bf6605ff29d3b338a75120bf791" in mosei
    )
    assert "Google Drive" in mosei and "https://github.com/thuiar/MMSA" in mosei


@pytest.mark.parametrize(
    "name, file_layout, fits",
    [
        ("mosi/unaligned_50", "mosei_unaligned", "mosei/unaligned_50"),
        ("mosei/aligned_50", "sims_unaligned", "sims/unaligned_39"),
        ("mosi/aligned_50", "mosi_unaligned", "mosi/unaligned_50"),
        ("mosei/unaligned_50", "mosei_aligned", "mosei/aligned_50"),
    ],
)
def test_file_that_does_not_fit_the_config_names_the_config_that_does(
    name, file_layout, fits, tmp_path
):
    manual = tmp_path / "manual"
    lengths = {"text": 3} if "_aligned" in file_layout else {"text": 3, "audio": 4, "vision": 5}
    write_pickle(_fake(file_layout, lengths), manual / f"{name.split('/')[1]}.pkl")
    with pytest.raises(DataError, match=f"does not fit {name}.*Fix: build {fits}"):
        _prepare(name, tmp_path, manual)


def test_loader_errors_propagate_unchanged(tmp_path):
    manual = tmp_path / "manual"
    raw = _fake(*CASES["mosei/unaligned_50"][::2])
    raw["valid"]["regression_labels"][1] = np.nan
    path = write_pickle(raw, manual / "unaligned_50.pkl")
    with pytest.raises(DataError) as built:
        _prepare("mosei/unaligned_50", tmp_path, manual)
    with pytest.raises(DataError) as loaded:
        load_mmsa_pickle(path, family="mosei")
    assert str(built.value) == str(loaded.value)
    assert "label is NaN" in str(built.value)
