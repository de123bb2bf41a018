import numpy as np
import pytest
import tensorflow as tf

from midg_keras.layers import InformationDecoupling
from tests.layer_test_case import length_mask, random_sequence, run_layer_test

LOSS_KEYS = ("loss", "kl", "reconstruction", "club")


@pytest.mark.parametrize(
    "decouple,num_weights",
    # 2 Gaussian encoders x 4, decoder 2, CLUB net 8.
    [("kl_recon_club", 18), ("kl_recon", 10), ("club", 16)],
)
def test_layer_basics(decouple, num_weights):
    run_layer_test(
        InformationDecoupling,
        init_kwargs={
            "hidden_dim": 4,
            "decouple": decouple,
            "club_weight": 0.5,
            "seed": 1,
        },
        input_data={"sequence": random_sequence(2, 5, 6), "mask": length_mask([5, 2], 5)},
        expected_output_shape={
            "in_domain": (2, 5, 4),
            "out_of_domain": (2, 5, 4),
            **{key: () for key in LOSS_KEYS},
        },
        expected_num_trainable_weights=num_weights,
    )


def test_loss_is_the_sum_of_the_selected_terms():
    x, mask = random_sequence(2, 5, 6), length_mask([5, 3], 5)
    for decouple in ("kl_recon_club", "kl_recon", "club"):
        layer = InformationDecoupling(hidden_dim=4, decouple=decouple, club_weight=0.5)
        out = {k: float(v) for k, v in layer(x, mask=mask).items() if k in LOSS_KEYS}
        if decouple == "kl_recon":
            assert out["club"] == 0.0
            np.testing.assert_allclose(out["loss"], out["kl"] + out["reconstruction"])
            continue
        streams = layer(x, mask=mask)
        log_likelihood = float(
            layer.club.log_likelihood(streams["in_domain"], streams["out_of_domain"], mask)
        )
        expected = out["kl"] + out["reconstruction"] + 0.5 * out["club"] - log_likelihood
        np.testing.assert_allclose(out["loss"], expected, rtol=1e-5)
        if decouple == "club":
            assert out["kl"] == 0.0 and out["reconstruction"] == 0.0
        else:
            assert out["kl"] > 0.0 and out["reconstruction"] > 0.0


def test_padding_changes_nothing():
    x, mask = random_sequence(2, 4, 6), length_mask([4, 2], 4)
    layer = InformationDecoupling(hidden_dim=4)
    out = layer(x, mask=mask)
    padded_x = np.concatenate([x, 30.0 * np.ones((2, 3, 6), "float32")], axis=1)
    padded_x[1, 2:4] = -30.0
    padded = layer(padded_x, mask=length_mask([4, 2], 7))
    for key in LOSS_KEYS:
        np.testing.assert_allclose(float(out[key]), float(padded[key]), rtol=1e-5)
    for key in ("in_domain", "out_of_domain"):
        streams = np.asarray(padded[key])
        np.testing.assert_allclose(streams[:, :4] * mask[..., None], out[key], atol=1e-6)
        assert np.all(streams[1, 2:] == 0.0) and np.all(streams[:, 4:] == 0.0)


def test_training_samples_and_inference_uses_means():
    x = random_sequence(2, 4, 6)
    layer = InformationDecoupling(hidden_dim=4, seed=0)
    first, second = layer(x), layer(x)
    np.testing.assert_array_equal(first["in_domain"], second["in_domain"])
    sampled = layer(x, training=True)
    assert np.abs(np.asarray(sampled["in_domain"]) - first["in_domain"]).max() > 1e-3


def test_reconstruction_target_is_held_fixed():
    x = tf.Variable(random_sequence(2, 4, 6))
    layer = InformationDecoupling(hidden_dim=4, decouple="kl_recon")
    with tf.GradientTape() as tape:
        reconstruction = layer(x)["reconstruction"]
    reconstruction_gradient = tape.gradient(reconstruction, x)
    # Only the path through the encoders reaches x, not the MSE target.
    with tf.GradientTape() as tape:
        decoded = layer.decoder(
            tf.concat([layer.in_domain_encoder(x)[0], layer.out_of_domain_encoder(x)[0]], -1)
        )
        through_encoders = tf.reduce_mean(tf.square(tf.stop_gradient(x) - decoded))
    np.testing.assert_allclose(
        reconstruction_gradient.numpy(), tape.gradient(through_encoders, x).numpy(), atol=1e-7
    )


def test_rejects_unknown_mode():
    with pytest.raises(ValueError, match="decouple must be one of"):
        InformationDecoupling(hidden_dim=4, decouple="kl")
