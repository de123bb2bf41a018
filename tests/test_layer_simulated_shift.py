import keras
import numpy as np
import pytest

from midg_keras.layers import SimulatedShift
from tests.layer_test_case import run_layer_test

RNG = np.random.default_rng(0)
SEQUENCE = RNG.normal(2.0, 3.0, size=(6, 10, 5)).astype("float32")
LENGTHS = np.array([10, 7, 4, 1, 9, 10])
MASK = np.arange(10)[None, :] < LENGTHS[:, None]


def _shift(training=True, seed=3, **kwargs):
    shifted, mask = SimulatedShift(seed=seed, **kwargs)(SEQUENCE, MASK, training=training)
    return keras.ops.convert_to_numpy(shifted), keras.ops.convert_to_numpy(mask)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"crop": 0.5, "frame_drop": 0.2, "channel_drop": 0.2, "stats": 1.0},
        {"stats": 0.5},
    ],
)
def test_layer_basics(kwargs):
    run_layer_test(
        SimulatedShift,
        init_kwargs={**kwargs, "seed": 1},
        input_data={"x": SEQUENCE, "frame_mask": MASK},
        expected_output_shape=((6, 10, 5), (6, 10)),
        run_gradient_check=False,
    )


def test_identity_at_inference():
    shifted, mask = _shift(training=False, crop=0.5, frame_drop=0.5, channel_drop=0.5, stats=2.0)
    np.testing.assert_array_equal(shifted, SEQUENCE)
    np.testing.assert_array_equal(mask, MASK)


def test_crop_keeps_one_contiguous_window_inside_the_clip():
    shifted, mask = _shift(crop=0.9)
    assert not (mask & ~MASK).any()
    for row, length in zip(mask, LENGTHS):
        kept = np.flatnonzero(row)
        assert 1 <= len(kept) <= length
        np.testing.assert_array_equal(kept, np.arange(kept[0], kept[-1] + 1))
    assert (mask.sum(1) < LENGTHS).any()
    np.testing.assert_array_equal(shifted[~mask], 0.0)
    np.testing.assert_array_equal(shifted[mask], SEQUENCE[mask])


def test_frame_drop_keeps_a_subset_and_at_least_one_frame():
    _, mask = _shift(frame_drop=0.95)
    assert not (mask & ~MASK).any()
    assert (mask.sum(1) >= 1).all()
    assert mask.sum() < MASK.sum()


def test_channel_drop_zeroes_whole_channels_for_the_whole_clip():
    shifted, mask = _shift(channel_drop=0.5)
    np.testing.assert_array_equal(mask, MASK)
    for sample in range(len(SEQUENCE)):
        valid = shifted[sample][MASK[sample]]
        zeroed = (valid == 0).all(axis=0)
        np.testing.assert_array_equal(valid[:, ~zeroed], SEQUENCE[sample][MASK[sample]][:, ~zeroed])
    dropped = (shifted == 0).all(axis=1) & ~(SEQUENCE == 0).all(axis=1)
    assert 0 < dropped.mean() < 1


def test_statistics_perturbation_moves_per_clip_means_and_keeps_the_shape_of_the_signal():
    shifted, mask = _shift(stats=1.0)
    np.testing.assert_array_equal(mask, MASK)
    sample = 0  # a full-length clip: its standardized sequence is unchanged

    def standardize(x):
        return (x - x.mean(0)) / x.std(0)

    np.testing.assert_allclose(
        np.abs(standardize(shifted[sample])), np.abs(standardize(SEQUENCE[sample])), atol=1e-3
    )
    assert not np.allclose(shifted[sample].mean(0), SEQUENCE[sample].mean(0), atol=1e-3)


def test_different_draws_per_call_and_seeded():
    first, _ = _shift(seed=5, crop=0.5, channel_drop=0.3, stats=1.0)
    again, _ = _shift(seed=5, crop=0.5, channel_drop=0.3, stats=1.0)
    np.testing.assert_array_equal(first, again)
    layer = SimulatedShift(crop=0.5, channel_drop=0.3, stats=1.0, seed=5)
    one = keras.ops.convert_to_numpy(layer(SEQUENCE, MASK, training=True)[0])
    two = keras.ops.convert_to_numpy(layer(SEQUENCE, MASK, training=True)[0])
    assert not np.array_equal(one, two)


@pytest.mark.parametrize("name", ["crop", "frame_drop", "channel_drop"])
def test_rejects_strengths_outside_zero_one(name):
    with pytest.raises(ValueError, match=name):
        SimulatedShift(**{name: 1.0})
