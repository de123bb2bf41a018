"""MIDG's simulated out-of-domain stream: training only, and its invariance reaches ŷ2."""

import numpy as np
import pytest
import tensorflow as tf

from midg_keras.models import MIDG, LateFusionBaseline

DIMS = {"text": 6, "audio": 4, "vision": 5}
SHIFT = dict(shift_crop=0.5, shift_frame_drop=0.3, shift_channel_drop=0.3, shift_stats=1.0)


def _batch(seed=0, size=4, steps=7):
    rng = np.random.default_rng(seed)
    inputs = {}
    for key, dim in DIMS.items():
        inputs[key] = rng.normal(size=(size, steps, dim)).astype("float32")
        lengths = rng.integers(2, steps + 1, size=size)
        inputs[f"{key}_mask"] = np.arange(steps)[None, :] < lengths[:, None]
    inputs["source_index"] = np.zeros(size, "int32")
    return inputs, rng.uniform(-1, 1, size=size).astype("float32")


def _midg(**kwargs):
    model = MIDG(
        input_dims=DIMS,
        strides={key: 1 for key in DIMS},
        hidden_dim=8,
        num_heads=2,
        num_experts=2,
        name="midg",
        **{**SHIFT, **kwargs},
    )
    model.build_weights()
    return model


def test_inference_is_deterministic_and_serves_the_clean_y2():
    model = _midg()
    inputs, _ = _batch()
    first = model(inputs, training=False)
    second = model(inputs, training=False)
    assert "y_out_shifted" not in first and "domain_logits_clean" not in first
    np.testing.assert_array_equal(first["prediction"].numpy(), second["prediction"].numpy())
    np.testing.assert_array_equal(first["prediction"].numpy(), first["y_out"].numpy())


def test_training_adds_the_simulated_stream():
    model = _midg()
    inputs, y = _batch()
    outputs = model(inputs, training=True)
    assert outputs["y_out_shifted"].shape == (4,)
    terms = model.loss_terms(inputs, y, outputs)
    assert float(terms["shifted_loss"]) > 0 and float(terms["domain_loss"]) > 0
    evaluation = model.loss_terms(inputs, y, model(inputs, training=False))
    assert float(evaluation["shifted_loss"]) == 0.0 and float(evaluation["domain_loss"]) == 0.0


def _term_gradients(model, term, inputs, y):
    with tf.GradientTape() as tape:
        terms = model.loss_terms(inputs, y, model(inputs, training=True))
        objective = terms[term]
    gradients = tape.gradient(objective, model.trainable_weights)
    return {
        weight.path: 0.0 if grad is None else float(tf.reduce_sum(tf.abs(grad)))
        for weight, grad in zip(model.trainable_weights, gradients)
    }


def _total(gradients, prefix):
    matched = [
        value for path, value in gradients.items() if path.split("/", 1)[1].startswith(prefix)
    ]
    assert matched, f"no weight under {prefix}"
    return sum(matched)


@pytest.mark.parametrize("reach", ["out_fusion", "cm_adapter_text", "encoder_audio"])
def test_reversed_domain_gradient_reaches_what_y2_is_computed_from(reach):
    model = _midg()
    model.gradient_reversal.grl_lambda.assign(1.0)
    inputs, y = _batch(1)
    gradients = _term_gradients(model, "domain_loss", inputs, y)
    assert _total(gradients, "discriminator") > 0
    assert _total(gradients, reach) > 0


@pytest.mark.parametrize("mode", ["pairwise", "to_shifted", "vrex"])
def test_consistency_gradient_reaches_the_y2_head(mode):
    model = _midg(consistency=mode, consistency_weight=1.0)
    inputs, y = _batch(2)
    gradients = _term_gradients(model, "consistency_loss", inputs, y)
    assert _total(gradients, "out_of_domain_head") > 0
    assert _total(gradients, "out_fusion") > 0


def test_erm_shift_trains_on_the_same_perturbation_and_plain_erm_does_not():
    inputs, y = _batch(3)
    for simulate, expect_shifted in ((True, True), (False, False)):
        model = LateFusionBaseline(
            input_dims=DIMS,
            strides={key: 1 for key in DIMS},
            hidden_dim=8,
            num_heads=2,
            simulate_shift=simulate,
            **SHIFT,
        )
        model.build_weights()
        outputs = model(inputs, training=True)
        assert ("prediction_shifted" in outputs) is expect_shifted
        terms = model.loss_terms(inputs, y, outputs)
        assert (float(terms["shifted_loss"]) > 0) is expect_shifted
        config = model.get_config()
        assert config["simulate_shift"] is simulate and config["shift_stats"] == 1.0
