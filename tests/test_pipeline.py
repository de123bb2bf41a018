"""The tf.data pipeline: sources, masks, label scaling, harmonization, strides."""

import numpy as np
import pytest

from midg_keras.config import Config
from midg_keras.data.errors import DataError
from midg_keras.data.pipeline import prepare_data, target_slug
from midg_keras.data.sources import load_source
from tests.fake_mmsa import make_fake_mmsa, write_pickle


def _pickle(tmp_path, layout, name=None, **kwargs):
    path = tmp_path / (name or f"{layout}.pkl")
    write_pickle(make_fake_mmsa(layout, **kwargs), str(path))
    return str(path)


def test_pickle_source_reports_family_dims_and_lengths(tmp_path):
    path = _pickle(tmp_path, "sims_unaligned")
    source = load_source(f"pickle:{path}@sims")
    assert source.family == "sims" and source.label_scale == 1.0
    raw = make_fake_mmsa("sims_unaligned")
    assert source.dims == {k: raw["train"][k].shape[-1] for k in ("text", "audio", "vision")}
    assert source.num_examples == {"train": 8, "validation": 4, "test": 4}
    example = next(iter(source.splits["train"]))
    assert example["audio"].shape[0] == int(example["audio_length"])
    assert "label_t" in example


def test_unknown_family_and_builder_are_data_errors(tmp_path):
    path = _pickle(tmp_path, "mosi_unaligned")
    with pytest.raises(DataError, match="@mosi, pickle:PATH@mosei"):
        load_source(f"pickle:{path}@imdb")
    with pytest.raises(DataError, match="unknown source 'imdb/x'"):
        load_source("imdb/x")


def test_batches_are_padded_masked_and_label_scaled(tmp_path):
    path = _pickle(tmp_path, "mosi_unaligned")
    config = Config(source=f"pickle:{path}", batch_size=4, modalities="t,a", shuffle_buffer=0)
    data = prepare_data(config)
    assert data.modalities == ["text", "audio"]
    inputs, label = next(iter(data.validation))
    assert set(inputs) == {"text", "text_mask", "audio", "audio_mask", "source_index"}
    lengths = inputs["audio_mask"].numpy().sum(axis=1)
    # Padding frames are zero and masked out; the batch is as long as its longest example.
    assert inputs["audio"].shape[1] == lengths.max()
    for row, length in enumerate(lengths):
        assert not inputs["audio"].numpy()[row, length:].any()
    raw = make_fake_mmsa("mosi_unaligned")["valid"]["regression_labels"][:4]
    np.testing.assert_allclose(label.numpy(), raw / 3.0, rtol=1e-6)
    inputs, label, ids = next(iter(data.test))
    assert ids.numpy()[0].decode() == make_fake_mmsa("mosi_unaligned")["test"]["id"][0]


def test_dim_mismatch_between_source_and_target(tmp_path):
    source = _pickle(tmp_path, "mosi_unaligned")
    target = _pickle(tmp_path, "mosei_unaligned")
    config = Config(source=f"pickle:{source}", target=f"pickle:{target}@mosei")
    with pytest.raises(DataError, match="--harmonize=pad"):
        prepare_data(config)
    data = prepare_data(config.replace(harmonize="pad"))
    inputs, _, _ = next(iter(data.test))
    assert (
        inputs["audio"].shape[-1]
        == data.dims["audio"]
        == load_source(f"pickle:{source}").dims["audio"]
    )
    assert data.target.family == "mosei"


def test_auto_stride_leaves_at_most_max_frames(tmp_path):
    path = _pickle(tmp_path, "mosi_unaligned", lengths={"text": 6, "audio": 30, "vision": 41})
    data = prepare_data(Config(source=f"pickle:{path}", max_frames=10))
    longest = load_source(f"pickle:{path}").max_lengths
    assert data.strides["text"] == 1
    # The smallest stride leaving <= 10 frames: 30 -> 3, 41 -> 5.
    assert longest["audio"] == 30 and longest["vision"] == 41
    assert data.strides["audio"] == 3 and data.strides["vision"] == 5
    forced = prepare_data(Config(source=f"pickle:{path}", av_stride="3"))
    assert forced.strides == {"text": 1, "audio": 3, "vision": 3}


def test_several_sources_are_indexed(tmp_path):
    first = _pickle(tmp_path, "mosi_unaligned", name="a.pkl")
    second = _pickle(tmp_path, "mosi_unaligned", name="b.pkl", seed=1)
    data = prepare_data(Config(source=f"pickle:{first},pickle:{second}", batch_size=64))
    inputs, _ = next(iter(data.train))
    assert sorted(set(inputs["source_index"].numpy().tolist())) == [0, 1]
    assert inputs["text"].shape[0] == 16


def test_several_targets_get_a_test_split_each_and_distinct_names(tmp_path):
    source = _pickle(tmp_path, "mosi_unaligned")
    sims = _pickle(tmp_path, "sims_unaligned", sizes=(8, 4, 6))
    config = Config(source=f"pickle:{source}", target=f"pickle:{sims}@sims,pickle:{source}")
    with pytest.raises(DataError, match="--harmonize=pad"):
        prepare_data(config)  # every target's dims are checked against the source
    data = prepare_data(config.replace(harmonize="pad"))
    assert [t.family for t in data.targets] == ["sims", "mosi"]
    assert data.target is data.targets[0] and data.test is data.tests[0]
    assert [sum(int(b[1].shape[0]) for b in test) for test in data.tests] == [6, 4]
    assert target_slug(f"pickle:{sims}@sims").endswith("_sims_unaligned_pkl_sims")
    with pytest.raises(DataError, match="give each target once"):
        prepare_data(config.replace(target=f"pickle:{source},pickle:{source}"))


def test_harmonize_pad_zero_pads_a_narrower_target_and_truncates_a_wider_one(tmp_path):
    """A MOSEI-like source (audio 74, vision 35) and a MOSI-like target (audio 5, vision 20)."""
    source = _pickle(tmp_path, "mosei_unaligned")
    narrow = _pickle(tmp_path, "mosi_unaligned")
    config = Config(source=f"pickle:{source}@mosei", target=f"pickle:{narrow}", harmonize="pad")
    data = prepare_data(config)
    target = load_source(f"pickle:{narrow}")
    assert all(target.dims[k] < data.dims[k] for k in ("audio", "vision"))  # padding case
    inputs, _, _ = next(iter(data.test))
    raw = next(iter(target.splits["test"]))  # the target's first test example, unpadded
    for key in ("text", "audio", "vision"):
        features = inputs[key].numpy()[0]
        length = int(raw[f"{key}_length"])
        assert features.shape[-1] == data.dims[key]
        width = min(target.dims[key], data.dims[key])
        np.testing.assert_array_equal(features[:length, :width], raw[key].numpy()[:, :width])
        assert not features[:, width:].any(), key  # the added channels are zeros
        assert not features[length:].any(), key  # and so are the padded time steps
    # The other way round (a MOSI-like source, the MOSEI-like target) truncates.
    wide = prepare_data(Config(source=f"pickle:{narrow}", target=f"pickle:{source}@mosei",
                               harmonize="pad"))  # fmt: skip
    inputs, _, _ = next(iter(wide.test))
    raw = next(iter(load_source(f"pickle:{source}@mosei").splits["test"]))
    length = int(raw["audio_length"])
    np.testing.assert_array_equal(
        inputs["audio"].numpy()[0, :length], raw["audio"].numpy()[:, : wide.dims["audio"]]
    )


def _epoch_labels(dataset):
    return [float(v) for _, labels in dataset for v in labels.numpy()]


def test_pickle_training_split_is_shuffled_in_place_every_epoch(tmp_path):
    path = _pickle(tmp_path, "mosi_unaligned", sizes=(24, 2, 2))
    config = Config(source=f"pickle:{path}", batch_size=5, seed=7)
    data = prepare_data(config)
    file_order = [
        float(v)
        for v in make_fake_mmsa("mosi_unaligned", sizes=(24, 2, 2))["train"]["regression_labels"]
        / 3.0
    ]
    first, second = _epoch_labels(data.train), _epoch_labels(data.train)
    # Each epoch is a permutation of the whole split, a new one each epoch ...
    assert sorted(first) == pytest.approx(sorted(file_order))
    assert sorted(second) == pytest.approx(sorted(file_order))
    assert first != second and first != file_order
    # ... the same sequence for the same seed, another for another seed.
    assert _epoch_labels(prepare_data(config).train) == first
    assert _epoch_labels(prepare_data(config.replace(seed=8)).train) != first


def test_two_pickle_sources_are_interleaved_in_one_epoch(tmp_path):
    first = _pickle(tmp_path, "mosi_unaligned", name="a.pkl", sizes=(12, 2, 2), seed=1)
    second = _pickle(tmp_path, "mosi_unaligned", name="b.pkl", sizes=(12, 2, 2), seed=2)
    data = prepare_data(Config(source=f"pickle:{first},pickle:{second}", batch_size=6))
    sources = [int(v) for inputs, _ in data.train for v in inputs["source_index"].numpy()]
    assert sorted(sources) == [0] * 12 + [1] * 12
    assert sources != sorted(sources)  # not one source after the other


def test_tfds_shuffle_buffer_is_capped_by_bytes():
    from midg_keras.data import pipeline

    class Large:  # a MOSEI-sized example: 50x768 + 500x74 + 500x35 float32
        dims = {"text": 768, "audio": 74, "vision": 35}
        max_lengths = {"text": 50, "audio": 500, "vision": 500}

    buffer = pipeline._shuffle_buffer(Config(shuffle_buffer=20000, batch_size=32), [Large()])
    assert buffer * pipeline._bytes_per_example(Large()) <= pipeline.SHUFFLE_BUFFER_BYTES
    assert 32 <= buffer < 20000


def test_shuffle_buffer_zero_keeps_the_file_order(tmp_path):
    path = _pickle(tmp_path, "mosi_unaligned", sizes=(24, 2, 2))
    data = prepare_data(Config(source=f"pickle:{path}", batch_size=5, shuffle_buffer=0))
    raw = make_fake_mmsa("mosi_unaligned", sizes=(24, 2, 2))["train"]["regression_labels"]
    assert _epoch_labels(data.train) == pytest.approx(list(raw / 3.0))


@pytest.mark.parametrize("shuffle_buffer", [0, 64], ids=["file_order", "shuffled_in_place"])
def test_every_batched_split_runs_without_the_autotuner(tmp_path, shuffle_buffer):
    # With the autotuner on, TF 2.21 blocks each iterator deletion (end of every epoch,
    # validation pass and fit) until the autotuner's sleep ends: up to 60 s idle.
    path = _pickle(tmp_path, "mosi_unaligned")
    data = prepare_data(
        Config(source=f"pickle:{path}", batch_size=4, shuffle_buffer=shuffle_buffer)
    )
    datasets = {"train": data.train, "new_train": data.new_train(), "validation": data.validation}
    datasets.update({f"test{i}": test for i, test in enumerate(data.tests)})
    for name, dataset in datasets.items():
        assert dataset.options().autotune.enabled is False, name
        assert next(iter(dataset))[1].shape[0] == 4, name
