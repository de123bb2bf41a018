"""The training options of the in-domain study: schedules, weight average, token dropout."""

import csv
import os
import warnings

import keras
import numpy as np
import pytest

from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data
from midg_keras.models import LateFusionBaseline
from midg_keras.training import experiment, trainer
from tests.fake_mmsa import make_fake_mmsa, write_pickle

TINY = dict(modalities="t", hidden_dim=16, num_heads=2, num_experts=2, batch_size=8, verbose=0)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("options") / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(24, 8, 8)), str(path))
    return f"pickle:{path}"


@pytest.mark.parametrize(
    "flags, expected",
    [
        # steps per epoch 10, 4 epochs: 40 steps.
        ({}, {0: 1e-3, 39: 1e-3}),
        ({"warmup_epochs": 0.5}, {0: 0.0, 2: 4e-4, 5: 1e-3, 39: 1e-3}),
        ({"lr_schedule": "cosine"}, {0: 1e-3, 20: 5e-4, 40: 0.0}),
        (
            {"lr_schedule": "cosine", "warmup_epochs": 1.0},
            {0: 0.0, 5: 5e-4, 10: 1e-3, 25: 5e-4, 40: 0.0},
        ),
    ],
)
def test_learning_rate_warms_up_then_stays_or_decays(flags, expected):
    config = Config(learning_rate=1e-3, epochs=4, **flags).validate()
    rate = trainer.learning_rate(config, steps=10)
    for step, value in expected.items():
        actual = rate if isinstance(rate, float) else float(rate(step))
        assert actual == pytest.approx(value, abs=1e-9), (step, actual)


def test_optimizer_keeps_a_weight_average_only_when_asked():
    assert not trainer.make_optimizer(Config(), 10).use_ema
    optimizer = trainer.make_optimizer(Config(ema_momentum=0.9), 10)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(0.9)


def _text_batch(length=12, dim=6, batch=4):
    rng = np.random.default_rng(0)
    return {
        "text": rng.normal(size=(batch, length, dim)).astype("float32"),
        "text_mask": np.arange(length)[None, :] < np.array([[12], [9], [5], [2]]),
        "source_index": np.zeros((batch,), "int32"),
    }


@pytest.mark.parametrize("token_dropout", [0.0, 0.7])
def test_token_dropout_changes_training_predictions_only(token_dropout):
    keras.utils.set_random_seed(1)
    model = LateFusionBaseline(
        input_dims={"text": 6},
        strides={"text": 1},
        hidden_dim=8,
        num_heads=2,
        dropout=0.0,
        token_dropout=token_dropout,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.build_weights()  # in inference mode: the token dropout is not called
    assert not [w for w in caught if "unbuilt state" in str(w.message)]
    batch = _text_batch()
    served = model(batch, training=False)["prediction"].numpy()
    np.testing.assert_array_equal(model(batch, training=False)["prediction"].numpy(), served)
    trained = model(batch, training=True)["prediction"].numpy()
    if token_dropout:
        # Every clip of 5+ tokens loses some: its mean-pooled text changes.
        assert np.abs(trained[:3] - served[:3]).min() > 1e-6
    else:
        np.testing.assert_allclose(trained, served, rtol=1e-6)
    restored = LateFusionBaseline.from_config(model.get_config())
    assert restored.token_dropout == token_dropout


def test_token_dropout_touches_only_the_text():
    model = LateFusionBaseline(
        input_dims={"text": 6, "audio": 3},
        strides={"text": 1, "audio": 1},
        hidden_dim=8,
        num_heads=2,
        token_dropout=0.9,
    )
    model.build_weights()
    batch = _text_batch()
    batch["audio"] = np.ones((4, 7, 3), "float32")
    batch["audio_mask"] = np.ones((4, 7), bool)
    seen = {}
    for key in ("text", "audio"):
        encoder = model.encoders[key]
        original = encoder.call

        def record(x, mask=None, training=None, _key=key, _original=original):
            seen[_key] = keras.ops.convert_to_numpy(mask)
            return _original(x, mask=mask, training=training)

        encoder.call = record
    model(batch, training=True)
    assert seen["text"].sum() < batch["text_mask"].sum()
    assert (seen["text"].sum(axis=1) >= 1).all()
    np.testing.assert_array_equal(seen["audio"], batch["audio_mask"])


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def test_weight_average_is_validated_while_training_continues_from_the_raw_weights(source):
    config = Config(
        source=source, model="erm", epochs=3, learning_rate=2e-2, ema_momentum=0.9, **TINY
    ).validate()
    data = prepare_data(config)
    model = trainer.compiled_model(config, data)
    seen = {"begin": [], "end": [], "raw_at_end": []}

    class RecordWeights(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen["begin"].append(_values(self.model.trainable_variables))

        def on_epoch_end(self, epoch, logs=None):
            seen["end"].append(_values(self.model.trainable_variables))
            # While the average is in the model, the optimizer's slots hold the raw weights.
            seen["raw_at_end"].append(_values(self.model.optimizer._model_variables_moving_average))

    history = trainer.fit(model, config, data, [RecordWeights()]).history
    for epoch in range(config.epochs):
        gap = max(
            np.abs(a - r).max() for a, r in zip(seen["end"][epoch], seen["raw_at_end"][epoch])
        )
        assert gap > 1e-4  # the average is not the raw weights
        if epoch + 1 < config.epochs:
            for begin, raw in zip(seen["begin"][epoch + 1], seen["raw_at_end"][epoch]):
                np.testing.assert_array_equal(begin, raw)
        for variable, value in zip(model.trainable_variables, seen["end"][epoch]):
            variable.assign(value)
        scores = model.evaluate(data.validation, return_dict=True, verbose=0)
        assert scores["prediction_loss"] == pytest.approx(
            history["val_prediction_loss"][epoch], rel=1e-5
        )


def test_the_saved_model_is_the_selected_weight_average(source, tmp_path):
    config = Config(
        source=source,
        model="erm",
        epochs=4,
        patience=0,
        learning_rate=2e-2,
        ema_momentum=0.9,
        workdir=str(tmp_path / "run"),
        **TINY,
    ).validate()
    results = experiment.run(config, log=lambda _: None)
    with open(tmp_path / "run" / "history.csv") as f:
        history = list(csv.DictReader(f))
    losses = [float(row["val_prediction_loss"]) for row in history]
    best = history[int(np.argmin(losses))]
    saved = keras.saving.load_model(os.path.join(config.workdir, "model.keras"))
    scores = saved.evaluate(prepare_data(config).validation, return_dict=True, verbose=0)
    assert scores["prediction_loss"] == pytest.approx(min(losses), rel=1e-5)
    assert results["erm"][0]["valid"]["MAE"] == pytest.approx(float(best["val_MAE"]), rel=1e-5)
