import numpy as np
import pytest

from midg_keras.layers import CrossModalAttention
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_masks", [True, False])
def test_layer_basics(with_masks):
    input_data = {
        "query": random_sequence(2, 5, 6),
        "context": random_sequence(2, 7, 4, seed=1),
    }
    if with_masks:
        input_data["query_mask"] = length_mask([5, 2], 5)
        input_data["context_mask"] = length_mask([7, 3], 7)
    run_layer_test(
        CrossModalAttention,
        init_kwargs={"num_heads": 2, "key_dim": 3, "dropout": 0.1},
        input_data=input_data,
        expected_output_shape=(2, 5, 6),
        expected_num_trainable_weights=8,
    )


def _dense(layer, x):
    return x @ np.asarray(layer.kernel) + np.asarray(layer.bias)


def test_matches_eq5_reference():
    """softmax(QK^T / sqrt(d_k)) V per head, padded keys excluded."""
    query, context = random_sequence(2, 3, 6), random_sequence(2, 4, 4, seed=1)
    context_mask = length_mask([4, 2], 4)
    attention = CrossModalAttention(num_heads=2, key_dim=3)
    outputs = np.asarray(attention(query, context, context_mask=context_mask))

    q = _dense(attention.query_projection, query).reshape(2, 3, 2, 3)
    k = _dense(attention.key_projection, context).reshape(2, 4, 2, 3)
    v = _dense(attention.value_projection, context).reshape(2, 4, 2, 3)
    expected = np.zeros((2, 3, 6), "float32")
    for b in range(2):
        n = context_mask[b].sum()
        for h in range(2):
            scores = q[b, :, h] @ k[b, :n, h].T / np.sqrt(3.0)
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            expected[b, :, 3 * h : 3 * h + 3] = weights @ v[b, :n, h]
    expected = _dense(attention.output_projection, expected)
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-5)


def test_padded_context_changes_nothing_and_padded_queries_are_zero():
    query, context = random_sequence(2, 4, 6), random_sequence(2, 5, 6, seed=1)
    query_mask, context_mask = length_mask([4, 2], 4), length_mask([5, 3], 5)
    attention = CrossModalAttention(num_heads=3, key_dim=2)
    outputs = np.asarray(attention(query, context, query_mask, context_mask))
    noisy_context = context.copy()
    noisy_context[1, 3:] = 1e3
    noisy = np.asarray(attention(query, noisy_context, query_mask, context_mask))
    np.testing.assert_allclose(outputs, noisy, atol=1e-6)
    assert np.all(outputs[1, 2:] == 0.0)
    assert np.all(np.abs(outputs[1, :2]).sum(axis=-1) > 0)


def test_fully_masked_context_row_gives_zeros_not_nan():
    query, context = random_sequence(2, 3, 4), random_sequence(2, 3, 4, seed=1)
    context_mask = length_mask([3, 0], 3)
    outputs = np.asarray(
        CrossModalAttention(num_heads=2, key_dim=2)(query, context, context_mask=context_mask)
    )
    assert np.all(np.isfinite(outputs))
    assert np.all(outputs[1] == 0.0)
    assert np.abs(outputs[0]).sum() > 0
