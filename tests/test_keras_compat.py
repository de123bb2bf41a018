"""Every private Keras / keras-tuner name the project uses still exists (midg_keras/keras_compat.py).

A Keras upgrade that removes one fails here, naming the attribute, rather than deep in a
training run.
"""

import keras
import pytest

from midg_keras import keras_compat


@pytest.mark.parametrize("where, name", keras_compat.PRIVATE_NAMES)
def test_private_name_still_exists(where, name, monkeypatch):
    monkeypatch.setattr(keras_compat, "PRIVATE_NAMES", ((where, name),))
    keras_compat.check_private_names()


def test_a_missing_private_name_is_named(monkeypatch):
    monkeypatch.setattr(keras_compat, "PRIVATE_NAMES", (("keras.Layer instance", "_gone"),))
    with pytest.raises(AttributeError, match="'_gone'"):
        keras_compat.check_private_names()


def test_seed_generators_are_found_at_any_depth():
    inner = keras.Sequential([keras.layers.Dropout(0.5), keras.layers.GaussianNoise(0.1)])
    model = keras.Sequential([keras.Input((2,)), inner, keras.layers.Dropout(0.5)])
    assert len(keras_compat.seed_generators(model)) == 3
    assert model in keras_compat.all_layers(model) and inner in keras_compat.all_layers(model)


def test_without_model_strategy_hides_and_restores_it():
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    assert model.distribute_strategy is strategy
    with keras_compat.without_model_strategy(model) as hidden:
        assert hidden is strategy
        assert model.distribute_strategy is not strategy
    assert model.distribute_strategy is strategy
