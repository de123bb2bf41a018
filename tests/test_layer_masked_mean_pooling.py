import numpy as np
import pytest

from midg_keras.layers import MaskedMeanPooling
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_mask", [True, False])
def test_layer_basics(with_mask):
    x = random_sequence(3, 5, 4)
    input_data = {"x": x, "mask": length_mask([5, 2, 1], 5)} if with_mask else x
    run_layer_test(
        MaskedMeanPooling,
        init_kwargs={},
        input_data=input_data,
        expected_output_shape=(3, 4),
    )


def test_averages_only_real_steps():
    x = np.array([[[1.0], [3.0], [100.0]], [[2.0], [-50.0], [7.0]]], "float32")
    mask = np.array([[True, True, False], [True, False, True]])
    pooled = np.asarray(MaskedMeanPooling()(x, mask=mask))
    np.testing.assert_allclose(pooled, [[2.0], [4.5]])


def test_all_masked_row_pools_to_zero():
    x = random_sequence(2, 4, 3)
    mask = length_mask([4, 0], 4)
    pooled = np.asarray(MaskedMeanPooling()(x, mask=mask))
    np.testing.assert_array_equal(pooled[1], np.zeros(3))
    np.testing.assert_allclose(pooled[0], x[0].mean(axis=0), rtol=1e-6)


def test_no_mask_is_plain_mean():
    x = random_sequence(2, 4, 3)
    np.testing.assert_allclose(np.asarray(MaskedMeanPooling()(x)), x.mean(axis=1), rtol=1e-6)
