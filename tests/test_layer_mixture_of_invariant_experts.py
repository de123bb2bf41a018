import numpy as np
import pytest
from scipy.special import erf

from midg_keras.layers import MixtureOfInvariantExperts
from tests.layer_test_case import run_layer_test


def _features(batch_size=5, dim=12, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, dim)).astype("float32")


@pytest.mark.parametrize("top_k", [0, 2])
def test_layer_basics(top_k):
    run_layer_test(
        MixtureOfInvariantExperts,
        init_kwargs={"num_experts": 3, "hidden_dim": 4, "top_k": top_k, "dropout": 0.2},
        input_data=_features(),
        expected_output_shape={"output": (5, 4), "gates": (5, 3), "aux_loss": ()},
        # Router 4 + 3 experts x 2 Dense x (kernel, bias).
        expected_num_trainable_weights=16,
    )


def _expert(moie, index, x):
    """Expert `index` as the Dense -> GELU -> Dense network it stands for."""
    intermediate, output = moie.expert_intermediate[index], moie.expert_output[index]
    hidden = x @ np.asarray(intermediate.kernel) + np.asarray(intermediate.bias)
    hidden = 0.5 * hidden * (1.0 + erf(hidden / np.sqrt(2.0)))
    return hidden @ np.asarray(output.kernel) + np.asarray(output.bias)


@pytest.mark.parametrize("top_k", [0, 1])
def test_output_is_the_gate_weighted_sum_of_experts(top_k):
    x = _features()
    moie = MixtureOfInvariantExperts(num_experts=3, hidden_dim=4, top_k=top_k)
    out = moie(x)
    gates = np.asarray(out["gates"])
    expected = sum(gates[:, [k]] * _expert(moie, k, x) for k in range(3))
    np.testing.assert_allclose(np.asarray(out["output"]), expected, rtol=1e-4, atol=1e-5)
    if top_k == 1:
        chosen = gates.argmax(axis=1)
        single = np.stack([_expert(moie, k, x[[i]])[0] for i, k in enumerate(chosen)])
        np.testing.assert_allclose(np.asarray(out["output"]), single, rtol=1e-4, atol=1e-5)


def test_experts_are_distinct_networks():
    moie = MixtureOfInvariantExperts(num_experts=3, hidden_dim=4)
    x = _features()
    moie(x)
    outputs = [_expert(moie, k, x) for k in range(3)]
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3


def test_one_instance_serves_two_streams_with_shared_weights():
    moie = MixtureOfInvariantExperts(num_experts=3, hidden_dim=4)
    first = moie(_features())
    num_weights = len(moie.weights)
    second = moie(_features(seed=1))
    assert len(moie.weights) == num_weights
    again = moie(_features())
    np.testing.assert_array_equal(np.asarray(first["output"]), np.asarray(again["output"]))
    assert np.abs(np.asarray(first["output"]) - np.asarray(second["output"])).max() > 1e-4
