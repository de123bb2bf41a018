"""The `synthetic` builder and its generator: layout, determinism, the domain shift it
promises, and the round trip through an MMSA pickle."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from datasets.synthetic import Synthetic, generate
from midg_keras.data.mmsa import load_mmsa_pickle

tfds.disable_progress_bar()

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNALIGNED_KEYS = {
    "raw_text",
    "audio",
    "vision",
    "id",
    "text",
    "text_bert",
    "audio_lengths",
    "vision_lengths",
    "annotations",
    "classification_labels",
    "regression_labels",
}


class SyntheticTest(tfds.testing.DatasetBuilderTestCase):
    """The default domain builds with the documented split sizes; no files are read.

    (domain_b is built in the round-trip test below; all domains share the code path.)
    """

    DATASET_CLASS = Synthetic
    SPLITS = {"train": 600, "validation": 150, "test": 300}
    BUILDER_CONFIG_NAMES_TO_TEST = ["domain_a"]
    # The builder reads nothing; the harness only needs an existing directory.
    EXAMPLE_DIR = os.path.dirname(generate.__file__)


@pytest.fixture(scope="module")
def domains():
    return {name: generate.generate_domain(name) for name in generate.DOMAINS}


def _pooled(split, drop_spurious):
    """Mean over true time steps of every modality, concatenated: a linear probe's input."""
    parts = []
    for key, lengths in (
        ("text", split["text_bert"][:, 1].sum(axis=1)),
        ("audio", np.asarray(split["audio_lengths"])),
        ("vision", np.asarray(split["vision_lengths"])),
    ):
        values = np.where(np.isinf(split[key]), 0.0, split[key])
        parts.append(values.sum(axis=1) / lengths[:, None])
    pooled = np.concatenate(parts, axis=1)
    return pooled[:, :-1] if drop_spurious else pooled  # vision's last channel is spurious


def _probe_correlations(domains, drop_spurious):
    train = domains["domain_a"]["train"]
    x = np.c_[_pooled(train, drop_spurious), np.ones(len(train["id"]))]
    weights = np.linalg.lstsq(x, train["regression_labels"], rcond=None)[0]
    scores = {}
    for name, data in domains.items():
        test = data["test"]
        prediction = np.c_[_pooled(test, drop_spurious), np.ones(len(test["id"]))] @ weights
        scores[name] = np.corrcoef(prediction, test["regression_labels"])[0, 1]
    return scores


def test_raw_dict_has_the_unaligned_mmsa_layout(domains):
    for name, data in domains.items():
        assert set(data) == {"train", "valid", "test"}
        for split_name, split in data.items():
            assert set(split) == UNALIGNED_KEYS
            n = generate.SPLIT_SIZES[split_name]
            assert split["text"].shape == (n, *generate.TEXT_SHAPE)
            assert split["audio"].shape == (n, *generate.AUDIO_SHAPE)
            assert split["vision"].shape == (n, *generate.VISION_SHAPE)
            assert split["text_bert"].shape == (n, 3, generate.TEXT_SHAPE[0])
            for key in ("text", "audio", "vision", "text_bert", "regression_labels"):
                assert split[key].dtype == np.float32, key
            assert isinstance(split["audio_lengths"], list)
            letter = generate.DOMAINS[name].letter
            assert all(re.fullmatch(rf"synth_{letter}_\d{{4}}\$_\$\d", i) for i in split["id"])
            # Zero padding after the true lengths, as in MMSA files.
            steps = np.arange(generate.AUDIO_SHAPE[0])
            padded = steps[None, :] >= np.asarray(split["audio_lengths"])[:, None]
            assert not split["audio"][padded].any()
            assert all(len(text.split()) >= 1 for text in split["raw_text"])


def test_videos_do_not_cross_splits(domains):
    videos = {
        s: {i.split("$_$")[0] for i in split["id"]} for s, split in domains["domain_c"].items()
    }
    assert not videos["train"] & videos["valid"]
    assert not videos["train"] & videos["test"]
    assert not videos["valid"] & videos["test"]


def test_labels_are_mosi_like(domains):
    labels = np.concatenate([d[s]["regression_labels"] for d in domains.values() for s in d])
    assert labels.min() >= -3.0 and labels.max() <= 3.0
    np.testing.assert_allclose(labels * 5, np.round(labels * 5), atol=1e-4)
    assert 0.02 < np.mean(labels == 0) < 0.2
    assert np.mean(labels > 0) > 0.3 and np.mean(labels < 0) > 0.3


def test_generation_is_deterministic_and_seeded(domains):
    again = generate.generate_domain("domain_b")
    for key in ("text", "audio", "vision", "regression_labels"):
        np.testing.assert_array_equal(again["train"][key], domains["domain_b"]["train"][key])
    assert list(again["test"]["raw_text"]) == list(domains["domain_b"]["test"]["raw_text"])
    other_seed = generate.generate_domain("domain_b", seed=1)
    assert not np.array_equal(other_seed["train"]["text"], again["train"]["text"])


def test_domains_differ_in_lengths_and_feature_statistics(domains):
    mean_text = {
        name: d["train"]["text_bert"][:, 1].sum(axis=1).mean() for name, d in domains.items()
    }
    assert mean_text["domain_a"] > mean_text["domain_c"] > mean_text["domain_b"]
    audio_lengths = np.asarray(domains["domain_a"]["train"]["audio_lengths"])
    assert len(np.unique(audio_lengths)) > 10
    low, high = generate.DOMAINS["domain_a"].audio_lengths
    assert audio_lengths.min() >= low and audio_lengths.max() <= high
    spread, offset = {}, {}
    for name, data in domains.items():
        frames = data["train"]["text"][data["train"]["text_bert"][:, 1] == 1]  # (frames, D)
        spread[name] = frames.std(axis=0).mean()
        offset[name] = np.abs(frames.mean(axis=0)).mean()
    assert spread["domain_b"] > spread["domain_a"] > spread["domain_c"]
    assert offset["domain_a"] < 0.1 < min(offset["domain_b"], offset["domain_c"])


def test_spurious_channel_predicts_the_label_in_domain_a_only(domains):
    corr = {}
    for name, data in domains.items():
        split = data["train"]
        leak = split["vision"][:, 0, generate.SPURIOUS_CHANNEL]
        corr[name] = np.corrcoef(leak, split["regression_labels"])[0, 1]
    assert corr["domain_a"] > 0.8
    assert abs(corr["domain_b"]) < 0.2
    assert corr["domain_c"] < -0.8


def test_shared_signal_transfers_and_the_spurious_one_hurts_transfer(domains):
    invariant = _probe_correlations(domains, drop_spurious=True)
    shortcut = _probe_correlations(domains, drop_spurious=False)
    # The true signal is shared: a probe trained on domain_a works everywhere.
    assert min(invariant.values()) > 0.6
    # Relying on the spurious channel helps in domain_a and hurts out of it.
    assert shortcut["domain_a"] > invariant["domain_a"]
    assert shortcut["domain_b"] < invariant["domain_b"]
    assert shortcut["domain_c"] < invariant["domain_c"] - 0.3


def test_sentiment_sits_at_some_steps_only(domains):
    split = domains["domain_a"]["train"]
    audio = np.where(np.isinf(split["audio"]), 0.0, split["audio"])
    # Project on the shared audio direction: the label shows in a window, not everywhere.
    direction = generate.shared_directions(generate.DEFAULT_SEED)[1]
    projection = audio @ direction * np.sign(split["regression_labels"])[:, None]
    strong = split["regression_labels"] != 0
    valid = np.arange(audio.shape[1])[None, :] < np.asarray(split["audio_lengths"])[:, None]
    active = projection[strong][valid[strong]]
    assert np.mean(active > 0.5) < 0.5 < np.mean(projection[strong].max(axis=1) > 0.5)


def test_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="domain_a"):
        generate.generate_domain("domain_z")


def test_cli_pickle_reads_back_identically_to_the_builder(tmp_path):
    path = tmp_path / "domain_b.pkl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "datasets.synthetic",
            "--write_pickle",
            str(path),
            "--domain",
            "domain_b",
        ],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    splits = load_mmsa_pickle(path, family="mosi")
    builder = tfds.builder("synthetic/domain_b", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare()
    assert builder.info.metadata["fixed_neg_inf"] == {s: a.fixed_neg_inf for s, a in splits.items()}
    assert builder.info.metadata["fixed_neg_inf"]["train"] > 0
    for split, arrays in splits.items():
        built = {
            ex["id"].decode(): ex
            for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False))
        }
        assert len(built) == len(arrays)
        for example in arrays.examples():
            row = built[example["id"]]
            assert row["raw_text"].decode() == example["raw_text"]
            assert row["label"] == example["label"]
            for key in ("text", "audio", "vision"):
                assert row[f"{key}_length"] == example[f"{key}_length"]
                np.testing.assert_array_equal(row[key], example[key])
