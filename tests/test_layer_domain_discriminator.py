import numpy as np
import pytest

from midg_keras.layers import DomainDiscriminator
from tests.layer_test_case import run_layer_test


@pytest.mark.parametrize("num_domains,num_logits", [(2, 1), (3, 3)])
def test_layer_basics(num_domains, num_logits):
    run_layer_test(
        DomainDiscriminator,
        init_kwargs={"hidden_dim": 8, "num_domains": num_domains, "dropout": 0.2},
        input_data=np.random.default_rng(0).normal(size=(4, 8)).astype("float32"),
        expected_output_shape=(4, num_logits),
        expected_num_trainable_weights=4,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_logits_are_float32_under_mixed_precision(policy):
    discriminator = DomainDiscriminator(hidden_dim=8, dtype=policy)
    logits = discriminator(np.ones((2, 8), "float32"))
    assert discriminator.hidden_dense.compute_dtype == policy.split("_")[1]
    assert logits.dtype == "float32"


def test_tiny_width_keeps_one_hidden_unit():
    discriminator = DomainDiscriminator(hidden_dim=1)
    assert discriminator(np.ones((2, 3), "float32")).shape == (2, 1)
    assert discriminator.hidden_dense.units == 1


def test_rejects_a_single_domain():
    with pytest.raises(ValueError, match="num_domains must be >= 2"):
        DomainDiscriminator(hidden_dim=8, num_domains=1)
