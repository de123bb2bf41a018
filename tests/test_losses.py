import math

import numpy as np
import pytest
import tensorflow as tf

from midg_keras import losses

MASK = np.array([[True, True, False], [True, False, False]])


def _scalar(value):
    assert value.dtype == "float32" and tuple(value.shape) == ()
    return float(value)


def test_masked_mean_over_real_tokens_and_dimensions():
    values = np.array(
        [[[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]], [[2.0, 4.0], [-9.0, 9.0], [1.0, 1.0]]],
        "float32",
    )
    assert _scalar(losses.masked_mean(values, MASK)) == pytest.approx(22.0 / 6.0)
    assert _scalar(losses.masked_mean(values)) == pytest.approx(values.mean())
    assert _scalar(losses.masked_mean(values[..., 0], MASK)) == pytest.approx(8.0 / 3.0)
    assert _scalar(losses.masked_mean(values, np.zeros((2, 3), bool))) == 0.0


def test_gaussian_kl_standard_normal():
    mean = np.zeros((2, 3, 2), "float32")
    log_var = np.zeros((2, 3, 2), "float32")
    assert _scalar(losses.gaussian_kl_standard_normal(mean, log_var)) == 0.0
    mean[0, 0] = [1.0, 2.0]  # KL = 0.5 * mu^2 per dimension: 0.5, 2.0
    log_var[1, 0] = [math.log(2.0), 0.0]  # 0.5 * (2 - 1 - log 2), 0
    log_var[0, 2] = [50.0, 50.0]  # padded: ignored
    expected = (0.5 + 2.0 + 0.5 * (1.0 - math.log(2.0))) / 6.0
    assert _scalar(losses.gaussian_kl_standard_normal(mean, log_var, MASK)) == (
        pytest.approx(expected, rel=1e-6)
    )


def test_masked_mse():
    a = np.zeros((2, 3, 2), "float32")
    b = np.zeros((2, 3, 2), "float32")
    b[0, 1] = [1.0, 3.0]
    b[1, 2] = [10.0, 10.0]  # padded
    assert _scalar(losses.masked_mse(a, b, MASK)) == pytest.approx(10.0 / 6.0)
    assert _scalar(losses.masked_mse(a, b)) == pytest.approx(210.0 / 12.0)


def test_gaussian_log_likelihood():
    y = np.array([[[1.0]], [[3.0]]], "float32")
    mean = np.array([[[0.0]], [[1.0]]], "float32")
    log_var = np.array([[[0.0]], [[math.log(4.0)]]], "float32")
    expected = np.mean([-0.5 * 1.0, -0.5 * (4.0 / 4.0 + math.log(4.0))])
    assert _scalar(losses.gaussian_log_likelihood(y, mean, log_var)) == pytest.approx(
        expected, rel=1e-6
    )


def test_regression_loss_flattens_before_comparing():
    y_true = np.array([1.0, -2.0, 0.5], "float32")
    y_pred = np.array([[2.0], [0.0], [0.5]], "float32")
    assert _scalar(losses.regression_loss(y_true, y_pred)) == pytest.approx(5.0 / 3.0)
    assert _scalar(losses.regression_loss(y_true, y_pred, kind="l1")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'mse' or 'l1'"):
        losses.regression_loss(y_true, y_pred, kind="huber")


def test_label_distribution_loss_is_zero_at_the_target_and_positive_elsewhere():
    centers = np.linspace(-1, 1, 21).astype("float32")
    y = np.array([-0.37, 0.0, 0.9], "float32")
    log_target = -0.5 * ((centers[None, :] - y[:, None]) / 0.1) ** 2
    assert float(losses.label_distribution_loss(y, log_target, centers, 0.1)) == pytest.approx(
        0.0, abs=1e-6
    )
    shifted = np.roll(log_target, 2, axis=-1)
    assert float(losses.label_distribution_loss(y, shifted, centers, 0.1)) > 0.1
    # The KL to the target, computed directly.
    logits = np.random.default_rng(0).normal(size=(3, 21)).astype("float32")
    target = np.exp(log_target) / np.exp(log_target).sum(-1, keepdims=True)
    predicted = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = np.mean(np.sum(target * (np.log(target + 1e-30) - np.log(predicted)), -1))
    actual = float(losses.label_distribution_loss(y[:, None], logits, centers, 0.1))
    assert actual == pytest.approx(expected, rel=1e-4)


def test_domain_bce_binary_and_multiclass():
    logits = np.array([[0.0], [2.0], [-1.0]], "float32")
    labels = np.array([1, 0, 0])

    def softplus(x):
        return math.log1p(math.exp(x))

    expected = (softplus(-0.0) + softplus(2.0) + softplus(-1.0)) / 3.0
    assert _scalar(losses.domain_bce_with_logits(labels, logits)) == pytest.approx(
        expected, rel=1e-6
    )
    assert _scalar(
        losses.domain_bce_with_logits(labels.astype("float32"), logits[:, 0])
    ) == pytest.approx(expected, rel=1e-6)

    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], "float32")
    labels = np.array([2, 0])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -(log_softmax[0, 2] + log_softmax[1, 0]) / 2.0
    assert _scalar(losses.domain_bce_with_logits(labels, logits)) == pytest.approx(
        expected, rel=1e-6
    )


def test_load_balance_loss():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], "float32")
    top1 = np.array([[1, 0, 0], [0, 1, 0]], "float32")
    # f = (0.5, 0.5, 0), P = (0.4, 0.4, 0.2): 3 * (0.2 + 0.2) = 1.2
    assert _scalar(losses.load_balance_loss(probs, top1)) == pytest.approx(1.2)
    uniform = np.full((4, 4), 0.25, "float32")
    everyone = np.ones((4, 4), "float32")
    assert _scalar(losses.load_balance_loss(uniform, everyone)) == pytest.approx(1.0)
    collapsed = np.tile([[1.0, 0.0, 0.0, 0.0]], (4, 1)).astype("float32")
    assert _scalar(losses.load_balance_loss(collapsed, collapsed)) == pytest.approx(4.0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_inputs_give_float32_losses(dtype):
    big = tf.cast(tf.fill((2, 3, 2), 300.0), dtype)  # 300^2 overflows float16
    zero = tf.zeros_like(big)
    assert _scalar(losses.masked_mse(big, zero, MASK)) == pytest.approx(90000.0, rel=1e-2)
    assert np.isfinite(_scalar(losses.gaussian_kl_standard_normal(big, zero, MASK)))
    assert _scalar(
        losses.regression_loss(tf.cast([1.0], dtype), tf.cast([[3.0]], dtype))
    ) == pytest.approx(4.0)
    assert _scalar(losses.domain_bce_with_logits([1], tf.cast([[0.0]], dtype))) == (
        pytest.approx(math.log(2.0), rel=1e-3)
    )
