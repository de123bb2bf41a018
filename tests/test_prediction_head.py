"""`--prediction_head=distribution`: score heads that predict a label distribution."""

import keras
import numpy as np
import pytest

from midg_keras import losses
from midg_keras.config import Config, ConfigError
from midg_keras.layers import LabelDistributionReadout
from midg_keras.layers.label_distribution_readout import bin_centers
from midg_keras.models import MIDG, LateFusionBaseline
from midg_keras.training import experiment
from tests.fake_mmsa import make_fake_mmsa, write_pickle

DIMS = {"text": 6, "audio": 4}
BINS = 9
MODELS = [
    (MIDG, {}),
    (LateFusionBaseline, {}),
    (LateFusionBaseline, {"simulate_shift": True}),
]


def _model(model_class, **kwargs):
    model = model_class(
        input_dims=DIMS,
        strides={key: 1 for key in DIMS},
        hidden_dim=8,
        num_heads=2,
        prediction_head="distribution",
        head_bins=BINS,
        label_sigma=0.2,
        **kwargs,
    )
    model.build_weights()
    return model


def _batch(size=4, steps=5, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {}
    for key, dim in DIMS.items():
        inputs[key] = rng.normal(size=(size, steps, dim)).astype("float32")
        inputs[f"{key}_mask"] = np.arange(steps)[None, :] < rng.integers(1, steps + 1, (size, 1))
    inputs["source_index"] = np.zeros(size, "int32")
    return inputs, rng.uniform(-1, 1, size=size).astype("float32")


@pytest.mark.parametrize("model_class, kwargs", MODELS)
def test_every_score_is_the_median_of_its_own_logits(model_class, kwargs):
    model = _model(model_class, **kwargs)
    inputs, _ = _batch()
    readout = LabelDistributionReadout(BINS)
    for training in (False, True):
        outputs = model(inputs, training=training)
        scores = [key for key in outputs if f"{key}_logits" in outputs]
        expected = {"y_in", "y_out"} if model_class is MIDG else {"prediction"}
        if training and (model_class is MIDG or kwargs):
            expected |= {"y_out_shifted"} if model_class is MIDG else {"prediction_shifted"}
        assert set(scores) == expected
        for key in scores:
            assert tuple(outputs[f"{key}_logits"].shape) == (4, BINS)
            np.testing.assert_allclose(
                np.asarray(outputs[key]),
                np.asarray(readout(outputs[f"{key}_logits"])),
                atol=1e-6,
            )


@pytest.mark.parametrize("model_class, kwargs", MODELS)
def test_heads_train_on_the_distribution_and_select_on_the_regression_loss(model_class, kwargs):
    model = _model(model_class, reg_loss="l1", **kwargs)
    inputs, y = _batch()
    outputs = model(inputs, training=False)
    terms = model.loss_terms(inputs, y, outputs)
    mae = np.abs(np.asarray(outputs["prediction"]) - y).mean()
    assert float(terms["prediction_loss"]) == pytest.approx(mae, rel=1e-5)
    logits_key = "y_in_logits" if model_class is MIDG else "prediction_logits"
    kl = losses.label_distribution_loss(y, outputs[logits_key], bin_centers(BINS), 0.2)
    trained_term = "in_loss" if model_class is MIDG else "loss"
    assert float(terms[trained_term]) == pytest.approx(float(kl), rel=1e-5)
    assert float(kl) != pytest.approx(mae, rel=1e-2)


@pytest.mark.parametrize("model_class, kwargs", MODELS[:2])
def test_a_distribution_head_survives_saving(model_class, kwargs, tmp_path):
    model = _model(model_class, **kwargs)
    inputs, _ = _batch()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert (restored.prediction_head, restored.head_bins) == ("distribution", BINS)
    np.testing.assert_allclose(
        np.asarray(restored(inputs, training=False)["prediction"]),
        np.asarray(model(inputs, training=False)["prediction"]),
        rtol=1e-5,
    )


def test_a_regression_head_adds_no_logits():
    model = MIDG(input_dims=DIMS, strides={key: 1 for key in DIMS}, hidden_dim=8, num_heads=2)
    model.build_weights()
    assert not [key for key in model(_batch()[0], training=True) if key.endswith("_logits")]


def test_an_unknown_head_is_refused_when_the_model_is_made():
    with pytest.raises(ValueError, match="prediction_head must be `regression` or `distribution`"):
        LateFusionBaseline(input_dims=DIMS, strides={"text": 1, "audio": 1}, prediction_head="x")


@pytest.mark.parametrize(
    "flags, message",
    [({"head_bins": 1}, "--head_bins=1: must be >= 2"), ({"label_sigma": 0.0}, "--label_sigma")],
)
def test_bad_head_flags_are_refused(flags, message):
    with pytest.raises(ConfigError, match=message):
        Config(prediction_head="distribution", **flags).validate()


@pytest.mark.parametrize("model_class, kwargs", MODELS[:2])
def test_a_distribution_head_learns_a_score(model_class, kwargs):
    """The label is a squashed mean of the first text feature: the heads must find it."""
    inputs, _ = _batch(size=256, seed=3)
    mask = inputs["text_mask"]
    first = (inputs["text"][..., 0] * mask).sum(-1) / mask.sum(-1)
    y = np.tanh(first).astype("float32")
    keras.utils.set_random_seed(0)
    model = _model(model_class, reg_loss="l1", **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(inputs, y, batch_size=32, epochs=40, verbose=0)
    prediction = np.asarray(model(inputs, training=False)["prediction"])
    assert np.corrcoef(prediction, y)[0, 1] > 0.9
    assert np.abs(prediction - y).mean() < 0.5 * np.abs(y - np.median(y)).mean()


def test_train_py_runs_a_distribution_head_end_to_end(tmp_path):
    path = tmp_path / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(24, 8, 8)), str(path))
    config = Config(
        source=f"pickle:{path}",
        modalities="t",
        baselines="erm",
        prediction_head="distribution",
        hidden_dim=16,
        num_heads=2,
        num_experts=2,
        batch_size=8,
        epochs=2,
        workdir=str(tmp_path / "run"),
        verbose=0,
    ).validate()
    results = experiment.run(config, log=lambda _: None)
    for model in ("midg", "erm"):
        assert np.isfinite(results[model][0]["test"]["MAE"])
    saved = keras.saving.load_model(str(tmp_path / "run" / "model.keras"))
    assert saved.prediction_head == "distribution"
