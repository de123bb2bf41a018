import keras
import numpy as np
import pytest
import tensorflow as tf

from midg_keras.layers import ClubEstimator
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_mask", [True, False])
def test_layer_basics(with_mask):
    input_data = {"x": random_sequence(2, 5, 4), "y": random_sequence(2, 5, 3, seed=1)}
    if with_mask:
        input_data["mask"] = length_mask([5, 2], 5)
    run_layer_test(
        ClubEstimator,
        init_kwargs={"hidden_dim": 8},
        input_data=input_data,
        expected_output_shape={"mi_upper_bound": (), "log_likelihood": ()},
        expected_num_trainable_weights=8,
    )


def _variational_parameters(club, x):
    def dense(inputs, weights):
        kernel, bias = (np.asarray(w) for w in weights)
        return inputs @ kernel + bias

    mean = dense(np.maximum(dense(x, club.mean_hidden), 0), club.mean_output)
    log_var = np.tanh(dense(np.maximum(dense(x, club.log_var_hidden), 0), club.log_var_output))
    return mean, log_var


def test_bound_equals_brute_force_over_all_pairs():
    x, y = random_sequence(2, 4, 3), random_sequence(2, 4, 2, seed=1)
    mask = length_mask([4, 2], 4)
    club = ClubEstimator(hidden_dim=8)
    bound = float(club(x, y, mask=mask)["mi_upper_bound"])

    mean, log_var = _variational_parameters(club, x[mask])
    tokens_y = y[mask]

    def log_q(i, j):  # log q(y_j | x_i) without constants
        return -0.5 * np.sum((tokens_y[j] - mean[i]) ** 2 / np.exp(log_var[i]))

    n = len(tokens_y)
    positive = np.mean([log_q(i, i) for i in range(n)])
    negative = np.mean([log_q(i, j) for i in range(n) for j in range(n)])
    np.testing.assert_allclose(bound, (positive - negative) / 2, rtol=1e-5)


def test_padded_tokens_change_nothing():
    x, y = random_sequence(2, 5, 3), random_sequence(2, 5, 3, seed=1)
    mask = length_mask([5, 2], 5)
    club = ClubEstimator(hidden_dim=8)
    terms = club(x, y, mask=mask)
    x[1, 2:], y[1, 2:] = 40.0, -40.0
    noisy = club(x, y, mask=mask)
    for key in terms:
        np.testing.assert_allclose(float(terms[key]), float(noisy[key]), rtol=1e-6)


def test_objectives_train_disjoint_variables():
    """The bound trains only the inputs, the likelihood only the estimator."""
    club = ClubEstimator(hidden_dim=8)
    x = tf.Variable(random_sequence(2, 4, 3))
    y = tf.Variable(random_sequence(2, 4, 3, seed=1))
    club(x, y)
    weights = [w.value for w in club.trainable_weights]
    with tf.GradientTape(persistent=True) as tape:
        bound = club.mi_upper_bound(x, y)
        log_likelihood = club.log_likelihood(x, y)
    for objective, trained, frozen in (
        (bound, [x, y], weights),
        (log_likelihood, weights, [x, y]),
    ):
        for gradient in tape.gradient(objective, trained):
            assert gradient is not None and np.abs(gradient.numpy()).sum() > 0
        for gradient in tape.gradient(objective, frozen):
            assert gradient is None or not np.any(gradient.numpy())


def test_trained_bound_is_larger_for_dependent_variables():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 64, 2)).astype("float32")
    dependent = x + 0.1 * rng.normal(size=x.shape).astype("float32")
    independent = rng.normal(size=x.shape).astype("float32")
    bounds = {}
    for name, y in (("dependent", dependent), ("independent", independent)):
        club = ClubEstimator(hidden_dim=16)
        club(x, y)
        optimizer = keras.optimizers.Adam(0.03)
        optimizer.build(club.trainable_variables)

        @tf.function
        def train_step(y=y, club=club, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = -club.log_likelihood(x, y)
            gradients = tape.gradient(loss, club.trainable_variables)
            optimizer.apply(gradients, club.trainable_variables)

        for _ in range(100):
            train_step()
        bounds[name] = float(club.mi_upper_bound(x, y))
    # True MI per dimension: 0.5 * log(1 + 1 / 0.1**2) = 2.3 nats vs 0.
    assert bounds["dependent"] > 1.5, bounds
    assert abs(bounds["independent"]) < 0.5, bounds
