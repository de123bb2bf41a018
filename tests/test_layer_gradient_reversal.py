import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from midg_keras.layers import GradientReversal
from tests.layer_test_case import run_layer_test


@pytest.mark.parametrize("initial_lambda", [1.0, 0.25])
def test_layer_basics(initial_lambda):
    run_layer_test(
        GradientReversal,
        init_kwargs={"initial_lambda": initial_lambda},
        input_data=np.random.default_rng(0).normal(size=(3, 4)).astype("float32"),
        expected_output_shape=(3, 4),
        expected_num_non_trainable_weights=1,
    )


def _gradient(layer, x, upstream):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        outputs = layer(x)
        objective = tf.reduce_sum(outputs * upstream)
    return outputs, tape.gradient(objective, x)


@pytest.mark.parametrize("reversal", [1.0, 0.3, 0.0])
def test_forward_identity_backward_reversed(reversal):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    upstream = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    outputs, gradient = _gradient(GradientReversal(reversal), x, upstream)
    np.testing.assert_array_equal(outputs.numpy(), x)
    np.testing.assert_allclose(gradient.numpy(), -reversal * upstream, rtol=1e-6)


def test_assigned_lambda_is_used_by_a_compiled_function():
    layer = GradientReversal(1.0)
    x = tf.Variable(np.ones((2, 3), "float32"))

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            objective = tf.reduce_sum(layer(x) * 2.0)
        return tape.gradient(objective, x)

    np.testing.assert_allclose(gradient().numpy(), -2.0)
    layer.grl_lambda.assign(0.25)
    np.testing.assert_allclose(gradient().numpy(), -0.5)


def test_float16_inputs():
    layer = GradientReversal(0.5, dtype="mixed_float16")
    x = np.array([[1.0, -2.0]], "float16")
    upstream = tf.constant([[2.0, 4.0]], "float16")
    outputs, gradient = _gradient(layer, x, upstream)
    assert outputs.dtype == tf.float16 and gradient.dtype == tf.float16
    np.testing.assert_array_equal(gradient.numpy(), [[-1.0, -2.0]])


def test_scheduled_lambda_survives_saving():
    inputs = keras.Input((3,))
    layer = GradientReversal(1.0)
    model = keras.Model(inputs, layer(inputs))
    layer.grl_lambda.assign(0.7)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "grl.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(float(reloaded.layers[-1].grl_lambda.numpy()), 0.7)
    assert not reloaded.layers[-1].grl_lambda.trainable
