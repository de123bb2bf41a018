"""MIDG's simulated out-of-domain stream: training only, and its invariance reaches ŷ2."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from midg_keras import keras_compat
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


def _domain_gradients(model, inputs, y, states):
    """Per-weight gradients of `domain_loss`, the simulated shift drawn from `states`."""
    for generator, state in zip(keras_compat.seed_generators(model), states):
        generator.state.assign(state)
    with tf.GradientTape() as tape:
        domain_loss = model.loss_terms(inputs, y, model(inputs, training=True))["domain_loss"]
    gradients = tape.gradient(domain_loss, model.trainable_weights)
    return {
        weight.path.split("/", 1)[1]: np.zeros(weight.shape) if grad is None else grad.numpy()
        for weight, grad in zip(model.trainable_weights, gradients)
    }


def test_reversed_gradient_is_minus_lambda_times_the_plain_one_upstream_of_o_only():
    """At model level: sign and scale of the reversal, and exactly which weights it reaches.

    The reference is the same model with the reversal layer replaced by the identity (the
    plain gradient). Upstream of O (out fusion, CM-Adapters, encoders) the reversed gradient
    is -λ times it; the discriminator's own gradient is not reversed; the in-domain path
    (MoIE, in-domain head) and ŷ2's head get none from the domain loss.
    """
    model = _midg()
    inputs, y = _batch(4)
    states = [g.state.numpy() for g in keras_compat.seed_generators(model)]
    lam = 0.37
    model.gradient_reversal.grl_lambda.assign(lam)
    reversed_ = _domain_gradients(model, inputs, y, states)
    model.gradient_reversal.call = lambda x, *args, **kwargs: x  # no reversal
    plain = _domain_gradients(model, inputs, y, states)
    groups = {"upstream": [], "discriminator": [], "none": []}
    for path in plain:
        if path.startswith(("out_fusion", "cm_adapter", "encoder")):
            groups["upstream"].append(path)
        elif path.startswith("discriminator"):
            groups["discriminator"].append(path)
        elif path.startswith(("moie", "in_domain_head", "out_of_domain_head")):
            groups["none"].append(path)
    assert all(groups.values()), groups
    for path in groups["upstream"]:
        np.testing.assert_allclose(reversed_[path], -lam * plain[path], rtol=1e-4, atol=1e-8)
    assert sum(np.abs(plain[p]).sum() for p in groups["upstream"]) > 0
    for path in groups["discriminator"]:
        np.testing.assert_allclose(reversed_[path], plain[path], rtol=1e-5, atol=1e-8)
    assert sum(np.abs(plain[p]).sum() for p in groups["discriminator"]) > 0
    for path in groups["none"]:
        assert not np.abs(reversed_[path]).any() and not np.abs(plain[path]).any(), path


def test_total_loss_weights_every_term_by_its_flag():
    """α, β, γ and the other weights against a total computed by hand from the terms."""
    weights = dict(
        alpha=0.7, beta=1.9, gamma=0.3, adv_weight=0.45, consistency_weight=2.5,
        router_aux_weight=0.21,
    )  # fmt: skip
    model = _midg(use_decoupling=True, router_top_k=1, **weights)
    inputs, y = _batch(5)
    terms = {
        k: float(v) for k, v in model.loss_terms(inputs, y, model(inputs, training=True)).items()
    }
    parts = {
        "alpha": terms["in_loss"],
        "beta": terms["out_loss"],
        "gamma": terms["decoupling_loss"],
        "adv_weight": terms["domain_loss"],
        "consistency_weight": terms["consistency_loss"],
        "router_aux_weight": terms["router_loss"],
    }
    assert all(value > 0 for value in parts.values()), parts  # each weight is tested
    expected = sum(weights[name] * value for name, value in parts.items())
    assert terms["loss"] == pytest.approx(expected, rel=1e-5)


def test_inference_path_selects_the_served_prediction():
    model = _midg(alpha=0.6, beta=1.8)
    inputs, _ = _batch(6)
    for path in ("in", "blend", "out"):
        model.inference_path = path  # read by every call
        outputs = {k: v.numpy() for k, v in model(inputs, training=False).items()}
        y_in, y_out = outputs["y_in"], outputs["y_out"]
        assert np.abs(y_in - y_out).max() > 1e-4  # the paths differ, so the choice shows
        expected = {"in": y_in, "out": y_out, "blend": (0.6 * y_in + 1.8 * y_out) / 2.4}[path]
        np.testing.assert_allclose(outputs["prediction"], expected, rtol=1e-5, atol=1e-7)


def test_source_domain_labels_make_a_three_way_discriminator_over_source_index():
    model = _midg(num_domains=3, adv_weight=1.0)
    inputs, y = _batch(7, size=6)
    inputs["source_index"] = np.array([0, 1, 2, 2, 1, 0], "int32")
    outputs = model(inputs, training=True)
    logits = {s: outputs[f"domain_logits_{s}"].numpy() for s in ("clean", "shifted")}
    assert logits["clean"].shape == logits["shifted"].shape == (6, 3)

    def cross_entropy(z):  # softmax cross-entropy against each sample's source, by hand
        z = z.astype("float64")
        log_softmax = z - z.max(-1, keepdims=True)
        log_softmax -= np.log(np.exp(log_softmax).sum(-1, keepdims=True))
        return -log_softmax[np.arange(6), inputs["source_index"]].mean()

    terms = model.loss_terms(inputs, y, outputs)
    expected = 0.5 * (cross_entropy(logits["clean"]) + cross_entropy(logits["shifted"]))
    assert float(terms["domain_loss"]) == pytest.approx(expected, rel=1e-5)
    for stream in ("clean", "shifted"):
        accuracy = np.mean(logits[stream].argmax(-1) == inputs["source_index"])
        assert float(terms[f"domain_acc_{stream}"]) == pytest.approx(accuracy)


@pytest.mark.parametrize("model_class", [MIDG, LateFusionBaseline])
def test_attention_pooling_has_its_own_weights_per_stream_and_survives_saving(
    model_class, tmp_path
):
    import keras

    kwargs = dict(input_dims=DIMS, strides={key: 1 for key in DIMS}, hidden_dim=8, num_heads=2)
    model = model_class(pooling="attention", **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.build_weights()
    # Every sublayer is built by the first call (no unused mean pooling left unbuilt).
    assert not [w for w in caught if "unbuilt state" in str(w.message)]
    streams = ("in", "out") if model_class is MIDG else ("in",)
    assert sorted(model.attention_poolings) == sorted(f"{s}_{k}" for s in streams for k in DIMS)
    mean_model = model_class(**kwargs)
    mean_model.build_weights()
    # One score kernel and bias per pooling, nothing else added.
    assert len(model.trainable_weights) == len(mean_model.trainable_weights) + 2 * len(
        model.attention_poolings
    )
    inputs, _ = _batch()
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.pooling == "attention"
    np.testing.assert_allclose(
        restored(inputs, training=False)["prediction"].numpy(),
        model(inputs, training=False)["prediction"].numpy(),
        rtol=1e-5,
    )


def test_an_unknown_pooling_is_refused_when_the_model_is_made():
    with pytest.raises(ValueError, match="pooling must be `mean` or `attention`, got 'max'"):
        LateFusionBaseline(input_dims=DIMS, strides={key: 1 for key in DIMS}, pooling="max")
