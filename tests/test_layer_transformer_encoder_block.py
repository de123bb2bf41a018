import numpy as np
import pytest

from midg_keras.layers import TransformerEncoderBlock
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_mask", [True, False])
def test_layer_basics(with_mask):
    x = random_sequence(2, 5, 8)
    run_layer_test(
        TransformerEncoderBlock,
        init_kwargs={
            "num_heads": 2,
            "intermediate_dim": 16,
            "dropout": 0.1,
            "layer_norm_epsilon": 1e-6,
        },
        input_data={"x": x, "mask": length_mask([5, 2], 5)} if with_mask else x,
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=16,
    )


def test_padded_positions_do_not_affect_real_ones():
    x = random_sequence(2, 6, 8)
    mask = length_mask([6, 3], 6)
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    outputs = np.asarray(block(x, mask=mask))
    noisy = x.copy()
    noisy[1, 3:] = 50.0
    np.testing.assert_allclose(
        np.asarray(block(noisy, mask=mask))[1, :3], outputs[1, :3], atol=1e-5
    )
    truncated = np.asarray(block(x[1:, :3], mask=mask[1:, :3]))
    np.testing.assert_allclose(truncated[0], outputs[1, :3], atol=1e-5)


def test_dropout_only_in_training():
    x = random_sequence(2, 4, 8)
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=16, dropout=0.5)
    inference = [np.asarray(block(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert np.abs(np.asarray(block(x, training=True)) - inference[0]).max() > 1e-3
