import numpy as np
import pytest

from midg_keras.layers import CMAdapter
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_masks", [True, False])
def test_layer_basics(with_masks):
    input_data = {"target": random_sequence(2, 4, 8), "context": random_sequence(2, 6, 8, 1)}
    if with_masks:
        input_data["target_mask"] = length_mask([4, 2], 4)
        input_data["context_mask"] = length_mask([6, 3], 6)
    run_layer_test(
        CMAdapter,
        init_kwargs={"hidden_dim": 8, "num_heads": 2, "dropout": 0.1},
        input_data=input_data,
        expected_output_shape=(2, 4, 8),
        # Attention 8, MLP 4, gate 2.
        expected_num_trainable_weights=14,
    )


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_target_gated_residual_injection():
    """O_mi = O_m + sigmoid(Dense(O_m)) * MLP(attention(O_m, context))."""
    target, context = random_sequence(2, 3, 8), random_sequence(2, 5, 8, seed=1)
    adapter = CMAdapter(hidden_dim=8, num_heads=2)
    outputs = np.asarray(adapter(target, context))
    injected = np.asarray(
        adapter.mlp_output(adapter.mlp_hidden(adapter.attention(target, context)))
    )
    gate = _sigmoid(target @ np.asarray(adapter.gate.kernel) + np.asarray(adapter.gate.bias))
    np.testing.assert_allclose(outputs, target + gate * injected, rtol=1e-5, atol=1e-5)

    adapter.gate.bias.assign(np.full((8,), -1e4, "float32"))
    np.testing.assert_allclose(np.asarray(adapter(target, context)), target, atol=1e-6)


def test_masks_padding_and_empty_context():
    target, context = random_sequence(2, 4, 8), random_sequence(2, 5, 8, seed=1)
    target_mask, context_mask = length_mask([4, 2], 4), length_mask([5, 0], 5)
    adapter = CMAdapter(hidden_dim=8, num_heads=2)
    outputs = np.asarray(adapter(target, context, target_mask, context_mask))
    assert np.all(np.isfinite(outputs))
    assert np.all(outputs[1, 2:] == 0.0)
    noisy_context = context.copy()
    noisy_context[1] = 1e3
    noisy_context[0, 5:] = 1e3
    noisy = np.asarray(adapter(target, noisy_context, target_mask, context_mask))
    np.testing.assert_allclose(outputs, noisy, atol=1e-6)


def test_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by"):
        CMAdapter(hidden_dim=10, num_heads=4)
