"""Runs every MIDG layer on the backend named by KERAS_BACKEND and prints OK.

Usage (from the repository root):
    KERAS_BACKEND=jax PYTHONPATH=. python tests/backend_check.py

Checks, with the backend's own tensors and autodiff:
- every layer's forward pass with masks (including an all-padded context
  row): expected shapes, finite values, zeros at padded positions;
- `GradientReversal`: gradient == -lambda * upstream (float32 and float16);
- `ClubEstimator`: the bound does not reach the estimator's weights;
- a functional model of the layers saves to `.keras` and reloads with
  identical outputs.
`tests/test_backends.py` runs it in subprocesses for JAX and PyTorch.
"""

import math
import os
import sys
import tempfile

import keras
import numpy as np
from keras import ops

from midg_keras import layers as midg_layers
from midg_keras import losses

BATCH, LENGTH, FEATURES, HIDDEN = 2, 7, 5, 8


def _numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def _mask(lengths, max_length):
    return np.arange(max_length)[None, :] < np.asarray(lengths)[:, None]


def _check(condition, message):
    if not condition:
        raise AssertionError(message)


def _check_finite(name, *tensors):
    for tensor in tensors:
        _check(np.all(np.isfinite(_numpy(tensor))), f"{name}: non-finite output")


def run(layer, *args, **kwargs):
    """Calls `layer` eagerly; on JAX as one jit-compiled `stateless_call`.

    Op-by-op JAX compiles every primitive separately, which makes this
    script ~10x slower than one compilation per layer; jit is also how the
    JAX trainer runs the layers.
    """
    if keras.backend.backend() != "jax":
        return layer(*args, **kwargs)
    import jax

    arrays = {k: v for k, v in kwargs.items() if isinstance(v, np.ndarray)}
    static = {k: v for k, v in kwargs.items() if k not in arrays}
    if not layer.built:
        layer(
            *tree_symbolic(args),
            **tree_symbolic(arrays),
            **{k: v for k, v in static.items() if k != "training"},
        )

    @jax.jit
    def forward(trainable, non_trainable, args, arrays):
        outputs, _ = layer.stateless_call(trainable, non_trainable, *args, **arrays, **static)
        return outputs

    return forward(
        [v.value for v in layer.trainable_variables],
        [v.value for v in layer.non_trainable_variables],
        args,
        arrays,
    )


def tree_symbolic(structure):
    return keras.tree.map_structure(
        lambda a: keras.KerasTensor(a.shape, dtype=str(a.dtype)), structure
    )


def gradient(fn, x):
    """d sum(fn(x)) / dx with the active backend's autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(tf.cast(fn(x), "float32"))
        return _numpy(tape.gradient(total, x))
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return _numpy(jax.jit(jax.grad(lambda v: jnp.sum(fn(v).astype("float32"))))(jnp.asarray(x)))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        fn(x).float().sum().backward()
        return _numpy(x.grad)
    raise ValueError(f"unsupported backend {backend!r}")


def check_forward():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(BATCH, LENGTH, FEATURES)).astype("float32")
    mask = _mask([LENGTH, 3], LENGTH)

    for stride in (1, 3):
        sequence, sequence_mask = run(
            midg_layers.ModalityEncoder(HIDDEN, num_heads=2, stride=stride),
            features,
            mask=mask,
        )
        steps = math.ceil(LENGTH / stride)
        _check(sequence.shape == (BATCH, steps, HIDDEN), f"encoder shape {sequence.shape}")
        lengths = _numpy(sequence_mask).sum(axis=1).tolist()
        _check(lengths == [steps, math.ceil(3 / stride)], f"encoder mask lengths {lengths}")
        _check(
            np.all(_numpy(sequence)[~_numpy(sequence_mask)] == 0.0),
            "encoder padding not zero",
        )
        _check_finite("ModalityEncoder", sequence)

    sequence = rng.normal(size=(BATCH, LENGTH, HIDDEN)).astype("float32")
    block = midg_layers.TransformerEncoderBlock(num_heads=2, intermediate_dim=16)
    _check_finite("TransformerEncoderBlock", run(block, sequence, mask=mask))

    z, mean, log_var = run(midg_layers.GaussianEncoder(4, seed=0), sequence, training=True)
    _check(z.shape == (BATCH, LENGTH, 4), "GaussianEncoder shape")
    _check_finite("GaussianEncoder", z, mean, log_var)

    terms = run(midg_layers.ClubEstimator(8), sequence, sequence, mask=mask)
    _check_finite("ClubEstimator", *terms.values())

    # The default mode runs every term (the other modes drop some).
    outputs = run(midg_layers.InformationDecoupling(4, seed=0), sequence, mask=mask, training=True)
    _check(outputs["in_domain"].shape == (BATCH, LENGTH, 4), "decoupling shape")
    _check(
        all(_numpy(outputs[k]).shape == () for k in ("loss", "kl", "reconstruction", "club")),
        "decoupling losses must be scalars",
    )
    _check_finite("InformationDecoupling", *outputs.values())

    pooled = run(midg_layers.MaskedMeanPooling(), sequence, mask=_mask([LENGTH, 0], LENGTH))
    _check(np.all(_numpy(pooled)[1] == 0.0), "pooling of an empty row must be 0")

    # Bins at -1, 0, 1 with masses 0.2, 0.2, 0.6: the median lies 1/6 into the last bin.
    logits = np.log(np.array([[0.2, 0.2, 0.6], [0.6, 0.2, 0.2]], "float32"))
    readout = midg_layers.LabelDistributionReadout(3)
    scores = _numpy(run(readout, logits))
    _check(np.allclose(scores, [2 / 3, -2 / 3], atol=1e-5), f"median readout: {scores}")
    slopes = gradient(lambda x: readout(x), logits)
    _check(np.all(np.abs(slopes).sum(axis=1) > 0), "the median readout needs a gradient")

    fused = rng.normal(size=(BATCH, 3 * HIDDEN)).astype("float32")
    for top_k in (0, 2):
        gates, aux_loss = run(midg_layers.Router(4, HIDDEN, top_k=top_k), fused)
        nonzero = (_numpy(gates) > 0).sum(axis=1)
        _check(np.all(nonzero == (top_k or 4)), f"router top_k={top_k}: {nonzero}")
        _check(np.allclose(_numpy(gates).sum(axis=1), 1.0, atol=1e-5), "gates sum")
        experts = run(midg_layers.MixtureOfInvariantExperts(4, HIDDEN, top_k=top_k), fused)
        _check(experts["output"].shape == (BATCH, HIDDEN), "MoIE shape")
        _check_finite("MixtureOfInvariantExperts", *experts.values(), aux_loss)

    for num_domains, units in ((2, 1), (3, 3)):
        logits = run(
            midg_layers.DomainDiscriminator(HIDDEN, num_domains=num_domains),
            experts["output"],
        )
        _check(logits.shape == (BATCH, units), "discriminator shape")
        loss = losses.domain_bce_with_logits(np.array([0, 1]), logits)
        _check_finite("domain loss", loss)

    context = rng.normal(size=(BATCH, 5, HIDDEN)).astype("float32")
    context_mask = _mask([5, 0], 5)
    attended = run(
        midg_layers.CrossModalAttention(2, 4),
        sequence,
        context,
        query_mask=mask,
        context_mask=context_mask,
    )
    _check_finite("CrossModalAttention", attended)
    _check(np.all(_numpy(attended)[1] == 0.0), "attention over an empty context")
    adapted = run(
        midg_layers.CMAdapter(HIDDEN, num_heads=2),
        sequence,
        context,
        target_mask=mask,
        context_mask=context_mask,
    )
    _check_finite("CMAdapter", adapted)
    _check(np.all(_numpy(adapted)[1, 3:] == 0.0), "CMAdapter padding not zero")


def check_gradient_reversal():
    x = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    layer = midg_layers.GradientReversal(initial_lambda=0.5)
    _check(np.array_equal(_numpy(layer(x)), x), "GRL forward must be the identity")
    grad = gradient(lambda v: layer(v) * 3.0, x)
    _check(np.allclose(grad, -1.5), f"GRL gradient {grad.ravel()[:4]}, expected -1.5")
    layer.grl_lambda.assign(2.0)
    grad = gradient(layer, x)
    _check(np.allclose(grad, -2.0), f"GRL gradient after assign {grad.ravel()[:4]}")

    half = midg_layers.GradientReversal(initial_lambda=0.5, dtype="mixed_float16")
    grad = gradient(lambda v: half(v) * 2.0, x.astype("float16"))
    _check(grad.dtype == np.float16, f"float16 GRL gradient dtype {grad.dtype}")
    _check(np.allclose(grad, -1.0), "float16 GRL gradient value")


def check_club_gradient_split():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    y = rng.normal(size=(2, 4, 3)).astype("float32")
    club = midg_layers.ClubEstimator(8)
    club(x, y)
    _check(
        np.abs(gradient(lambda v: club.mi_upper_bound(v, y), x)).sum() > 0,
        "CLUB bound must train its inputs",
    )
    _check(
        not np.any(gradient(lambda v: club.log_likelihood(v, y), x)),
        "CLUB log-likelihood must not train its inputs",
    )


def check_saved_model():
    features = keras.Input((LENGTH, FEATURES), name="features")
    mask = keras.Input((LENGTH,), dtype="bool", name="mask")
    sequence, sequence_mask = midg_layers.ModalityEncoder(HIDDEN, num_heads=2, stride=2)(
        features, mask=mask
    )
    decoupled = midg_layers.InformationDecoupling(4, seed=0)(sequence, mask=sequence_mask)
    adapted = midg_layers.CMAdapter(4, num_heads=2)(
        decoupled["out_of_domain"],
        decoupled["in_domain"],
        target_mask=sequence_mask,
        context_mask=sequence_mask,
    )
    pooled = midg_layers.MaskedMeanPooling()(adapted, mask=sequence_mask)
    experts = midg_layers.MixtureOfInvariantExperts(3, 4, top_k=2)(pooled)
    reversed_output = midg_layers.GradientReversal()(experts["output"])
    logits = midg_layers.DomainDiscriminator(4)(reversed_output)
    model = keras.Model([features, mask], {"logits": logits, "decoupling_loss": decoupled["loss"]})

    inputs = [
        np.random.default_rng(3).normal(size=(BATCH, LENGTH, FEATURES)).astype("float32"),
        _mask([LENGTH, 2], LENGTH),
    ]
    expected = {k: _numpy(v) for k, v in run(model, inputs, training=False).items()}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
    for key, value in run(reloaded, inputs, training=False).items():
        _check(np.allclose(_numpy(value), expected[key], atol=1e-6), f"reload {key}")


def main():
    check_forward()
    check_gradient_reversal()
    check_club_gradient_split()
    check_saved_model()
    print(f"OK {keras.backend.backend()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
