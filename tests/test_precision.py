"""Mixed precision (docs/design.md §8): `--mixed_precision` policies on CPU.

Heads and losses stay float32."""

import json
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from midg_keras import keras_compat
from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data
from midg_keras.layers import GradientReversal
from midg_keras.training import precision, trainer
from tests.fake_mmsa import make_fake_mmsa, write_pickle

TINY = dict(hidden_dim=16, num_heads=2, num_experts=2, router_top_k=1, batch_size=8, verbose=0)
COMPUTE_DTYPES = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(16, 8, 8)), str(path))
    return f"pickle:{path}"


@pytest.mark.parametrize("gpu, expected", [(False, "float32"), (True, "mixed_float16")])
def test_auto_is_float16_on_gpu_and_float32_on_cpu(monkeypatch, gpu, expected):
    monkeypatch.setattr(precision, "gpu_available", lambda: gpu)
    assert precision.precision_policy_name(Config(mixed_precision="auto")) == expected
    explicit = Config(mixed_precision="mixed_bfloat16")
    assert precision.precision_policy_name(explicit) == "mixed_bfloat16"


def test_this_cpu_machine_resolves_auto_to_float32():
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    assert precision.precision_policy_name(Config()) == "float32"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_policy_model_trains_with_float32_variables_heads_and_losses(source, policy):
    config = Config(source=source, mixed_precision=policy, **TINY).validate()
    data = prepare_data(config)
    keras.utils.set_random_seed(1)
    model = trainer.compiled_model(config, data)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored

    assert model.dtype_policy.name == policy
    assert {v.dtype for v in model.trainable_weights} == {"float32"}
    compute_dtype = COMPUTE_DTYPES[policy]
    low = [
        layer for layer in keras_compat.all_layers(model) if layer.compute_dtype == compute_dtype
    ]
    assert len(low) > 20  # encoders, attention, experts... compute in 16 bits
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")

    inputs, label = next(iter(data.train))
    outputs = model(inputs, training=False)
    assert {keras.backend.standardize_dtype(v.dtype) for v in outputs.values()} == {"float32"}
    terms = model.loss_terms(inputs, label, outputs)
    for name, value in terms.items():
        assert keras.backend.standardize_dtype(value.dtype) == "float32", name
        assert np.isfinite(float(value)), name

    weights = [w.numpy() for w in model.trainable_weights]
    logs = model.train_step((inputs, label))
    assert math.isfinite(float(logs["loss"]))
    after = [w.numpy() for w in model.trainable_weights]
    changed = sum(not np.array_equal(a, b) for a, b in zip(weights, after))
    assert changed > len(weights) // 2


class RecordingSGD(keras.optimizers.SGD):
    """SGD with learning rate 0 that keeps the gradients it is given.

    Under `mixed_float16` Keras wraps it in a `LossScaleOptimizer`, which hands it the
    gradients after unscaling them: what the weights would be updated with.
    """

    def __init__(self):
        super().__init__(learning_rate=0.0)
        self.applied = []

    def apply(self, grads, trainable_variables=None):
        self.applied.append(np.concatenate([np.asarray(g, np.float32).ravel() for g in grads]))
        return super().apply(grads, trainable_variables)


# A loss of order 1e-4 (α = β = 1e-4, as late in training): many activation gradients fall
# below float16's normal range (6e-5), so without loss scaling they flush to zero or lose
# their digits (relative error ~0.2 measured); with it float16 is within ~1e-3 of float32.
# bfloat16 has float32's range (no loss scaling) but an 8-bit mantissa (~0.07 measured).
GRADIENT_TOLERANCE = {"mixed_float16": 1e-2, "mixed_bfloat16": 0.15}
SMALL_LOSS = dict(alpha=1e-4, beta=1e-4)
NO_RANDOMNESS = dict(
    dropout=0.0, shift_crop=0.0, shift_frame_drop=0.0, shift_channel_drop=0.0, shift_stats=0.0,
    router_top_k=0,  # a top-1 choice may flip between precisions; a dense mixture cannot
    shuffle_buffer=0,
)  # fmt: skip


def _first_step_gradients(source, policy, monkeypatch, weights=None, batch=None):
    """The gradients MIDG's first train_step applies under `policy`, from `weights`."""
    monkeypatch.setattr(trainer, "make_optimizer", lambda config, steps: RecordingSGD())
    config = Config(
        source=source, mixed_precision=policy, **{**TINY, **NO_RANDOMNESS, **SMALL_LOSS}
    ).validate()
    data = prepare_data(config)
    keras.utils.set_random_seed(1)
    model = trainer.compiled_model(config, data)
    if weights is not None:
        model.set_weights(weights)
    batch = batch if batch is not None else next(iter(data.train))
    model.train_step(batch)
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    assert len(optimizer.applied) == 1, "the step was skipped (non-finite scaled gradients)"
    return optimizer.applied[0], model.get_weights(), batch


@pytest.fixture(scope="module")
def float32_gradients(source):
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _first_step_gradients(source, "float32", monkeypatch)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_first_step_gradients_match_float32(source, float32_gradients, monkeypatch, policy):
    """Same weights and batch: 16-bit gradients (unscaled) are float32's within a tolerance."""
    expected, weights, batch = float32_gradients
    gradients, _, _ = _first_step_gradients(source, policy, monkeypatch, weights, batch)
    assert np.linalg.norm(expected) > 0
    error = np.linalg.norm(gradients - expected) / np.linalg.norm(expected)
    assert error < GRADIENT_TOLERANCE[policy], f"{policy}: relative gradient error {error:.3g}"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gradient_reversal_in_16_bits(dtype):
    # The layer's policy as under --mixed_precision: computes in 16 bits.
    layer = GradientReversal(initial_lambda=0.5, dtype=f"mixed_{dtype}")
    layer.build((2, 3))
    x = tf.constant(np.arange(6).reshape(2, 3), dtype=dtype)

    def reversed_gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            total = tf.reduce_sum(y * tf.cast(3.0, dtype))
        return y, tape.gradient(total, x)

    for fn in (reversed_gradient, tf.function(reversed_gradient)):
        y, gradient = fn(x)
        assert y.dtype.name == dtype and gradient.dtype.name == dtype
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        np.testing.assert_array_equal(gradient.numpy().astype("float32"), np.full((2, 3), -1.5))


def test_mixed_float16_training_run_end_to_end(source, tmp_path):
    """MIDG's compiled (graph) train step with loss scaling, checkpoint reload and scoring.

    Text only (quicker to trace), with the adversary and the consistency term on, so the
    reversed gradient and every loss term run in float16 graphs.
    """
    config = Config(
        source=source, modalities="t", mixed_precision="mixed_float16", epochs=2,
        adv_weight=0.1, consistency_weight=0.5, workdir=str(tmp_path / "run"), **TINY,
    ).validate()  # fmt: skip
    results = trainer.train(config, prepare_data(config), config.workdir)
    assert math.isfinite(results["test"]["MAE"])
    with open(os.path.join(config.workdir, "history.csv")) as f:
        rows = f.read().splitlines()
    assert len(rows) == 3
    header = rows[0].split(",")
    for row in rows[1:]:
        values = dict(zip(header, row.split(",")))
        for name in ("loss", "val_loss", "domain_loss", "consistency_loss", "val_prediction_loss"):
            assert math.isfinite(float(values[name])), name
    saved = json.load(open(os.path.join(config.workdir, "config.json")))
    assert saved["mixed_precision"] == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"
