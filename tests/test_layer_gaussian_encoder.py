import numpy as np
import pytest
import tensorflow as tf

from midg_keras.layers import GaussianEncoder
from tests.layer_test_case import random_sequence, run_layer_test


@pytest.mark.parametrize("shape", [(2, 5, 6), (3, 6)])
def test_layer_basics(shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    latent_shape = shape[:-1] + (4,)
    run_layer_test(
        GaussianEncoder,
        init_kwargs={"latent_dim": 4, "log_var_limit": 6.0, "seed": 3},
        input_data=x,
        expected_output_shape=(latent_shape, latent_shape, latent_shape),
        expected_num_trainable_weights=4,
    )


def test_inference_returns_the_mean():
    encoder = GaussianEncoder(latent_dim=4)
    z, mean, _ = encoder(random_sequence(2, 3, 6), training=False)
    np.testing.assert_array_equal(np.asarray(z), np.asarray(mean))


def test_training_samples_with_the_posterior_scale():
    encoder = GaussianEncoder(latent_dim=64, seed=1)
    x = random_sequence(1, 200, 6)
    z, mean, log_var = (np.asarray(t) for t in encoder(x, training=True))
    standardized = (z - mean) / np.exp(0.5 * log_var)
    assert abs(standardized.mean()) < 0.05
    assert abs(standardized.std() - 1.0) < 0.05
    z_again = np.asarray(encoder(x, training=True)[0])
    assert np.abs(z_again - z).max() > 1e-3


def test_reparameterization_passes_gradients_to_mean_and_log_var():
    encoder = GaussianEncoder(latent_dim=4, seed=0)
    x = random_sequence(2, 3, 6)
    encoder(x)
    with tf.GradientTape() as tape:
        z, _, _ = encoder(x, training=True)
        loss = tf.reduce_sum(z**2)
    grads = tape.gradient(loss, [w.value for w in encoder.log_var_dense.weights])
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)


def test_log_var_is_clipped():
    encoder = GaussianEncoder(latent_dim=4, log_var_limit=2.0)
    _, _, log_var = encoder(random_sequence(2, 3, 6) * 1e4)
    log_var = np.asarray(log_var)
    assert log_var.max() <= 2.0 and log_var.min() >= -2.0
    assert np.isclose(np.abs(log_var).max(), 2.0)
