"""Shared checks for custom layers, in the style of keras-hub's `run_layer_test`."""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from keras import ops, tree

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")


def random_sequence(batch_size, length, dim, seed=0):
    return np.random.default_rng(seed).normal(size=(batch_size, length, dim)).astype("float32")


def length_mask(lengths, max_length):
    """Boolean `(batch, max_length)` mask that is True below each length."""
    return np.arange(max_length)[None, :] < np.asarray(lengths)[:, None]


def _as_call_inputs(input_data):
    return input_data if isinstance(input_data, dict) else {"x": input_data}


def _call(layer, inputs, **kwargs):
    positional = [v for k, v in inputs.items() if k == "x"]
    named = {k: v for k, v in inputs.items() if k != "x"}
    return layer(*positional, **named, **kwargs)


def _numpy(structure):
    return tree.map_structure(lambda t: np.asarray(ops.convert_to_numpy(t)), structure)


def _flatten_shapes(expected):
    """Flattens a structure of shape tuples in `tree.flatten` order."""
    if isinstance(expected, dict):
        return [s for key in sorted(expected) for s in _flatten_shapes(expected[key])]
    if all(isinstance(dim, int) or dim is None for dim in expected):
        return [tuple(expected)]
    return [s for item in expected for s in _flatten_shapes(item)]


def _assert_shapes(outputs, expected_output_shape):
    actual = [tuple(t.shape) for t in tree.flatten(outputs)]
    assert actual == _flatten_shapes(expected_output_shape), (
        actual,
        expected_output_shape,
    )
    if isinstance(outputs, dict):
        assert sorted(outputs) == sorted(expected_output_shape)


def _assert_finite(outputs):
    for value in tree.flatten(_numpy(outputs)):
        if value.dtype != bool:
            assert np.all(np.isfinite(value.astype("float32"))), value


def _check_config_round_trip(layer, layer_cls, init_kwargs):
    config = layer.get_config()
    for key, value in init_kwargs.items():
        if key != "dtype":
            assert config[key] == value, (key, config[key], value)
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config


def _check_saved_model_round_trip(layer, inputs, outputs):
    symbolic = {
        name: keras.Input(shape=value.shape[1:], dtype=str(value.dtype), name=name)
        for name, value in inputs.items()
    }
    model = keras.Model(symbolic, _call(layer, symbolic))
    expected = _numpy(model(inputs, training=False))
    for actual, direct in zip(tree.flatten(expected), tree.flatten(_numpy(outputs))):
        np.testing.assert_allclose(actual, direct, rtol=1e-5, atol=1e-5)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "layer.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
    restored = _numpy(reloaded(inputs, training=False))
    for actual, wanted in zip(tree.flatten(restored), tree.flatten(expected)):
        np.testing.assert_allclose(actual, wanted, rtol=1e-6, atol=1e-6)


def _check_every_weight_gets_gradient(layer, inputs):
    variables = {
        name: tf.Variable(value)
        for name, value in inputs.items()
        if np.issubdtype(value.dtype, np.floating)
    }
    call_inputs = {**inputs, **variables}
    with tf.GradientTape() as tape:
        outputs = _call(layer, call_inputs, training=True)
        total = tf.add_n(
            [
                tf.reduce_mean(tf.cast(t, "float32"))
                for t in tree.flatten(outputs)
                if t.dtype.is_floating
            ]
        )
    gradients = tape.gradient(total, [w.value for w in layer.trainable_weights])
    missing = [w.path for w, g in zip(layer.trainable_weights, gradients) if g is None]
    assert not missing, f"weights without a gradient: {missing}"


def _check_mixed_precision(layer_cls, init_kwargs, inputs, policy):
    layer = layer_cls(**{**init_kwargs, "dtype": policy})
    outputs = _call(layer, inputs)
    _assert_finite(outputs)
    for weight in layer.weights:
        assert weight.dtype == "float32", (weight.path, weight.dtype)
    for value in tree.flatten(outputs):
        if len(value.shape) == 0:
            assert value.dtype == "float32", "scalar losses must stay float32"
        elif value.dtype != "bool":
            assert value.dtype in ("float32", layer.compute_dtype), value.dtype


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights=0,
    expected_num_non_trainable_weights=0,
    run_mixed_precision_check=True,
    run_gradient_check=True,
):
    """Builds, runs, serializes and reloads a layer, asserting what must hold.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments; each must come back from `get_config`.
        input_data: a numpy array for a layer called as `layer(x)`, or a dict
            from call-argument names to numpy arrays (`"x"` is passed
            positionally, every other name by keyword, e.g. masks).
        expected_output_shape: a shape tuple, or the nested structure
            (tuple/dict) of shape tuples matching the outputs.
        expected_num_trainable_weights: `len(layer.trainable_weights)`.
        expected_num_non_trainable_weights: `len(layer.non_trainable_weights)`.
        run_mixed_precision_check: also run under mixed_float16 and
            mixed_bfloat16: float32 variables, finite outputs, float32 scalars.
        run_gradient_check: every trainable weight receives a gradient from
            the mean of each floating output (TensorFlow tape, training=True).

    Returns:
        the built layer and its inference outputs (numpy), for further checks.
    """
    inputs = _as_call_inputs(input_data)
    layer = layer_cls(**init_kwargs)
    outputs = _call(layer, inputs, training=False)
    _assert_shapes(outputs, expected_output_shape)
    _assert_finite(outputs)
    _assert_shapes(_call(layer, inputs, training=True), expected_output_shape)

    assert len(layer.trainable_weights) == expected_num_trainable_weights, [
        w.path for w in layer.trainable_weights
    ]
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, [
        w.path for w in layer.non_trainable_weights
    ]

    _check_config_round_trip(layer, layer_cls, init_kwargs)
    _check_saved_model_round_trip(layer, inputs, outputs)
    if run_gradient_check:
        _check_every_weight_gets_gradient(layer, inputs)
    if run_mixed_precision_check:
        for policy in MIXED_POLICIES:
            _check_mixed_precision(layer_cls, init_kwargs, inputs, policy)
    return layer, _numpy(outputs)
