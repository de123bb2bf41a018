import keras
import numpy as np
import pytest

from midg_keras.layers import MaskedAttentionPooling
from tests.layer_test_case import length_mask, random_sequence, run_layer_test


@pytest.mark.parametrize("with_mask", [True, False])
def test_layer_basics(with_mask):
    x = random_sequence(3, 5, 4)
    input_data = {"x": x, "mask": length_mask([5, 2, 1], 5)} if with_mask else x
    run_layer_test(
        MaskedAttentionPooling,
        init_kwargs={},
        input_data=input_data,
        expected_output_shape=(3, 4),
        expected_num_trainable_weights=2,
    )


def _pooling_with_scores(weight, bias=0.0, dim=2):
    pooling = MaskedAttentionPooling()
    pooling.build((None, None, dim))
    pooling.score.kernel.assign(np.full((dim, 1), weight, "float32"))
    pooling.score.bias.assign(np.array([bias], "float32"))
    return pooling


def test_weights_are_a_softmax_of_the_scores_over_real_steps():
    x = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 0.0]]], "float32")
    mask = np.array([[True, True, False]])
    pooled = np.asarray(_pooling_with_scores(1.0)(x, mask=mask))
    weights = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()  # the padded step gets none
    np.testing.assert_allclose(pooled[0], [weights @ [1.0, 3.0], 0.0], rtol=1e-5)


def test_zero_scores_give_the_masked_mean_and_empty_rows_zero():
    x = random_sequence(2, 4, 2)
    mask = length_mask([3, 0], 4)
    pooled = np.asarray(_pooling_with_scores(0.0)(x, mask=mask))
    np.testing.assert_allclose(pooled[0], x[0, :3].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(pooled[1], np.zeros(2))


def test_padding_values_never_reach_the_output():
    x = random_sequence(1, 5, 3)
    mask = length_mask([2], 5)
    pooling = MaskedAttentionPooling()
    changed = x.copy()
    changed[:, 2:] = 1e4
    np.testing.assert_allclose(
        np.asarray(pooling(x, mask=mask)), np.asarray(pooling(changed, mask=mask)), rtol=1e-6
    )


def test_scores_learn_to_pick_the_step_that_matters():
    """The target is the first feature of the flagged step: only a peaked softmax fits it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 6, 3)).astype("float32")
    flagged = rng.integers(0, 6, size=256)
    x[:, :, 2] = 0.0
    x[np.arange(256), flagged, 2] = 5.0
    y = x[np.arange(256), flagged, 0]
    inputs = keras.Input((6, 3))
    model = keras.Model(inputs, MaskedAttentionPooling()(inputs)[:, :1])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    model.fit(x, y, epochs=60, batch_size=64, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.05 * y.var()
