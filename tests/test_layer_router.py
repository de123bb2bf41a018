import numpy as np
import pytest

from midg_keras.layers import Router
from tests.layer_test_case import run_layer_test


def _features(batch_size=6, dim=10, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, dim)).astype("float32")


@pytest.mark.parametrize("top_k", [0, 1, 2, 4])
def test_layer_basics(top_k):
    run_layer_test(
        Router,
        init_kwargs={"num_experts": 4, "hidden_dim": 8, "top_k": top_k},
        input_data=_features(),
        expected_output_shape=((6, 4), ()),
        expected_num_trainable_weights=4,
    )


def test_dense_mixture_is_the_softmax_and_has_no_aux_loss():
    router = Router(num_experts=3, hidden_dim=8)
    x = _features()
    gates, aux_loss = router(x)
    gates = np.asarray(gates)
    hidden = np.maximum(
        x @ np.asarray(router.hidden_dense.kernel) + np.asarray(router.hidden_dense.bias), 0
    )
    logits = hidden @ np.asarray(router.logits_dense.kernel) + np.asarray(router.logits_dense.bias)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(gates, expected, rtol=1e-5)
    assert float(aux_loss) == 0.0


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_top_k_keeps_the_largest_weights_renormalized(top_k):
    dense_router = Router(num_experts=5, hidden_dim=8)
    x = _features(batch_size=7)
    probs = np.asarray(dense_router(x)[0])
    sparse_router = Router(num_experts=5, hidden_dim=8, top_k=top_k)
    sparse_router(x)
    sparse_router.set_weights(dense_router.get_weights())
    gates, aux_loss = sparse_router(x)
    gates = np.asarray(gates)

    assert np.all((gates > 0).sum(axis=1) == top_k)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)
    for row_probs, row_gates in zip(probs, gates):
        kept = np.argsort(row_probs)[-top_k:]
        np.testing.assert_allclose(
            row_gates[kept], row_probs[kept] / row_probs[kept].sum(), rtol=1e-5
        )
    # Load balance: K * sum_i f_i P_i with f_i the fraction of assignments.
    selected = gates > 0
    fractions = selected.sum(axis=0) / selected.sum()
    np.testing.assert_allclose(
        float(aux_loss), 5 * np.sum(fractions * probs.mean(axis=0)), rtol=1e-5
    )


def test_rejects_top_k_above_num_experts():
    with pytest.raises(ValueError, match="top_k must be in"):
        Router(num_experts=2, hidden_dim=4, top_k=3)
