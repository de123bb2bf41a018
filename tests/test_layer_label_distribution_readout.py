import numpy as np
import pytest
import tensorflow as tf

from midg_keras.layers import LabelDistributionReadout
from midg_keras.layers.label_distribution_readout import bin_centers
from tests.layer_test_case import run_layer_test


@pytest.mark.parametrize("num_bins, low, high", [(5, -1.0, 1.0), (61, -1.0, 1.0), (4, 0.0, 3.0)])
def test_layer_basics(num_bins, low, high):
    logits = np.random.default_rng(0).normal(size=(3, num_bins)).astype("float32")
    run_layer_test(
        LabelDistributionReadout,
        init_kwargs={"num_bins": num_bins, "low": low, "high": high},
        input_data=logits,
        expected_output_shape=(3,),
        run_gradient_check=False,  # no weights
    )


def _median_of_piecewise_uniform(probabilities, centers):
    """The median by inverting the piecewise-linear CDF with numpy's interpolation."""
    width = centers[1] - centers[0]
    edges = np.concatenate([[centers[0] - width / 2], centers + width / 2])
    cdf = np.concatenate([[0.0], np.cumsum(probabilities)])
    return np.interp(0.5, cdf, edges)


def test_the_score_is_the_median_of_the_predicted_distribution():
    rng = np.random.default_rng(1)
    logits = (3 * rng.normal(size=(64, 11))).astype("float32")
    scores = np.asarray(LabelDistributionReadout(num_bins=11)(logits))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    centers = np.asarray(bin_centers(11))
    expected = [_median_of_piecewise_uniform(p, centers) for p in probabilities]
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_a_peaked_distribution_reads_its_bin_center_and_a_flat_one_the_middle():
    readout = LabelDistributionReadout(num_bins=5)  # centers -1, -0.5, 0, 0.5, 1
    peaked = np.full((5, 5), -30.0, "float32")
    peaked[np.arange(5), np.arange(5)] = 0.0
    np.testing.assert_allclose(np.asarray(readout(peaked)), [-1, -0.5, 0, 0.5, 1], atol=1e-5)
    assert float(readout(np.zeros((1, 5), "float32"))[0]) == pytest.approx(0.0, abs=1e-6)


def test_the_median_moves_with_the_logits():
    """A consistency penalty on scores needs their gradient (the median is not piecewise constant)."""
    logits = tf.Variable(np.random.default_rng(2).normal(size=(4, 9)).astype("float32"))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(LabelDistributionReadout(num_bins=9)(logits))
    gradient = tape.gradient(total, logits).numpy()
    assert np.all(np.abs(gradient).sum(-1) > 0)


@pytest.mark.parametrize("kwargs", [{"num_bins": 1}, {"num_bins": 5, "low": 1.0, "high": 1.0}])
def test_bad_bins_are_refused(kwargs):
    with pytest.raises(ValueError, match="LabelDistributionReadout"):
        LabelDistributionReadout(**kwargs)
