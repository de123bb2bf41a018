import math

import keras
import numpy as np
import pytest

from midg_keras.layers import ModalityEncoder
from tests.layer_test_case import length_mask, random_sequence, run_layer_test

# Conv1D kernel + bias, then per block: 4 attention Dense (kernel, bias),
# 2 LayerNorm (gamma, beta), 2 FFN Dense (kernel, bias).
WEIGHTS_PER_BLOCK = 8 + 4 + 4


@pytest.mark.parametrize(
    "stride,num_layers,intermediate_dim",
    [(1, 1, None), (3, 2, 8), (4, 0, None)],
)
def test_layer_basics(stride, num_layers, intermediate_dim):
    length = 7
    run_layer_test(
        ModalityEncoder,
        init_kwargs={
            "hidden_dim": 8,
            "num_layers": num_layers,
            "num_heads": 2,
            "intermediate_dim": intermediate_dim,
            "stride": stride,
            "dropout": 0.1,
        },
        input_data={
            "x": random_sequence(2, length, 5),
            "mask": length_mask([7, 3], length),
        },
        expected_output_shape=(
            (2, math.ceil(length / stride), 8),
            (2, math.ceil(length / stride)),
        ),
        expected_num_trainable_weights=2 + WEIGHTS_PER_BLOCK * num_layers,
    )


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_output_mask_is_ceil_of_lengths(stride):
    lengths = [9, 5, 1, 4]
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=stride)
    sequence, mask = encoder(random_sequence(4, 9, 3), mask=length_mask(lengths, 9))
    mask = np.asarray(mask)
    new_lengths = [math.ceil(n / stride) for n in lengths]
    assert sequence.shape == (4, math.ceil(9 / stride), 8)
    np.testing.assert_array_equal(mask, length_mask(new_lengths, mask.shape[1]))
    sequence = np.asarray(sequence)
    assert np.all(sequence[~mask] == 0.0)
    assert np.all(np.abs(sequence[mask]).sum(axis=-1) > 0)


@pytest.mark.parametrize("stride", [1, 3])
def test_padding_frames_change_nothing(stride):
    """Extra padded frames, with garbage in them, leave real outputs unchanged."""
    lengths = [7, 4]
    x = random_sequence(2, 7, 5)
    x[1, 4:] = 0.0
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=stride)
    sequence, mask = encoder(x, mask=length_mask(lengths, 7))

    garbage = random_sequence(2, 6, 5, seed=1) * 100.0
    padded_x = np.concatenate([x, garbage], axis=1)
    padded_x[1, 4:7] = garbage[1, :3]
    padded_sequence, padded_mask = encoder(padded_x, mask=length_mask(lengths, 13))

    real_steps = np.asarray(mask).shape[1]
    np.testing.assert_array_equal(np.asarray(padded_mask)[:, :real_steps], mask)
    assert not np.asarray(padded_mask)[:, real_steps:].any()
    np.testing.assert_allclose(
        np.asarray(padded_sequence)[:, :real_steps],
        np.asarray(sequence),
        atol=1e-5,
    )


def test_no_mask_means_all_frames_real():
    x = random_sequence(2, 6, 5)
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=2)
    sequence, mask = encoder(x)
    all_real_sequence, _ = encoder(x, mask=np.ones((2, 6), bool))
    assert np.asarray(mask).all()
    np.testing.assert_allclose(np.asarray(sequence), np.asarray(all_real_sequence))


def test_stride_longer_than_sequence():
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=4)
    sequence, mask = encoder(random_sequence(2, 2, 5), mask=length_mask([2, 1], 2))
    assert sequence.shape == (2, 1, 8)
    np.testing.assert_array_equal(np.asarray(mask), [[True], [True]])


def test_chunks_are_anchored_at_the_first_frame():
    """Output frame i summarizes input frames [i*stride, (i+1)*stride)."""
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=3, num_layers=0)
    x = random_sequence(1, 6, 5)
    encoder(x)
    changed = x.copy()
    changed[0, 3:] += 1.0
    before = np.asarray(encoder(x)[0])
    after = np.asarray(encoder(changed)[0])
    np.testing.assert_allclose(before[0, 0], after[0, 0], atol=1e-6)
    assert np.abs(before[0, 1] - after[0, 1]).max() > 1e-3


def test_dynamic_length_in_a_functional_model():
    inputs = keras.Input((None, 5))
    mask = keras.Input((None,), dtype="bool")
    sequence, sequence_mask = ModalityEncoder(hidden_dim=8, num_heads=2, stride=3)(
        inputs, mask=mask
    )
    model = keras.Model([inputs, mask], [sequence, sequence_mask])
    for length in (4, 9):
        out, out_mask = model([random_sequence(2, length, 5), length_mask([length, 1], length)])
        assert out.shape == (2, math.ceil(length / 3), 8)
        assert np.asarray(out_mask).sum() == math.ceil(length / 3) + 1


def test_non_finite_values_in_padded_frames_are_ignored():
    x = random_sequence(2, 6, 5)
    mask = length_mask([6, 4], 6)
    encoder = ModalityEncoder(hidden_dim=8, num_heads=2, stride=2)
    clean = np.asarray(encoder(x, mask=mask)[0])
    x[1, 4] = -np.inf
    x[1, 5] = np.nan
    dirty = np.asarray(encoder(x, mask=mask)[0])
    assert np.all(np.isfinite(dirty))
    np.testing.assert_allclose(dirty, clean, atol=1e-6)


def test_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        ModalityEncoder(hidden_dim=10, num_heads=4)
