"""MIDG's forward pass and loss on JAX and PyTorch, and TF's train_step against compute_loss.

docs/design.md §8: one loss code path serves every backend. TensorFlow writes a tiny MIDG's weights
and a batch; subprocesses with KERAS_BACKEND=jax / torch load them and must reproduce
TF's predictions and every loss term; PyTorch also runs one step of Keras' own
`train_step` (which calls `compute_loss`). JAX runs a jitted forward pass + `compute_loss`
only: its first train step compiles for about a minute on a CI CPU.
"""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from midg_keras import keras_compat
from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data
from midg_keras.training import trainer
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.skips import skip_unless_ci

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")

# Runs in a subprocess: loads the TF-written weights and batch, prints one RESULT line.
WORKER = r"""
import json, os, sys
import numpy as np
import keras
from midg_keras.models import MIDG

folder = sys.argv[1]
arrays = dict(np.load(os.path.join(folder, "batch.npz")))
label = arrays.pop("label")
model = MIDG(**json.load(open(os.path.join(folder, "model.json"))))
# Built by a symbolic call on the batch's shapes: no eager op-by-op pass to wait for. In
# training mode, so the layers of the simulated out-of-domain stream are built too.
model({k: keras.KerasTensor(v.shape, dtype=str(v.dtype)) for k, v in arrays.items()}, training=True)
model.load_weights(os.path.join(folder, "tf.weights.h5"))
if keras.backend.backend() == "jax":  # jitted: also shows the forward pass traces in JAX
    import jax

    forward = jax.jit(lambda weights, state, x: model.stateless_call(weights, state, x)[0])
    y_pred = forward(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        arrays,
    )
else:
    y_pred = model(arrays, training=False)
loss = model.compute_loss(arrays, label, y_pred, training=False)
numpy = keras.ops.convert_to_numpy
result = {
    "backend": keras.backend.backend(),
    "outputs": {k: numpy(v).tolist() for k, v in y_pred.items()},
    "output_dtypes": sorted({str(numpy(v).dtype) for v in y_pred.values()}),
    "terms": {k: float(numpy(v)) for k, v in model.loss_terms(arrays, label, y_pred).items()},
    "loss": float(numpy(loss)),
}
if keras.backend.backend() == "torch":
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    before = [numpy(v).copy() for v in model.trainable_weights]
    logs = model.train_on_batch(arrays, label, return_dict=True)
    result["train_logs"] = {k: float(v) for k, v in logs.items()}
    result["weights_changed"] = sum(
        not np.array_equal(a, numpy(b)) for a, b in zip(before, model.trainable_weights)
    )
    result["num_weights"] = len(before)
print("RESULT " + json.dumps(result))
"""

MODEL_ARGS = (
    "input_dims", "strides", "hidden_dim", "encoder_layers", "num_heads", "dropout",
    "num_experts", "router_top_k", "router_aux_weight", "decouple", "club_weight", "use_moie",
    "use_cm_adapter", "use_decoupling", "alpha", "beta", "gamma", "adv_weight", "reg_loss",
    "inference_path", "num_domains", "consistency_weight", "consistency", "shift_crop",
    "shift_frame_drop", "shift_channel_drop", "shift_stats",
)  # fmt: skip


@pytest.fixture(scope="module")
def tf_reference(tmp_path_factory):
    """A tiny MIDG (no dropout) on TF: its weights, one batch, outputs and loss terms."""
    folder = tmp_path_factory.mktemp("backends")
    pickle_path = str(folder / "mosi.pkl")
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(16, 8, 8)), pickle_path)
    config = Config(
        source=f"pickle:{pickle_path}", hidden_dim=16, num_heads=2, num_experts=2,
        router_top_k=1, batch_size=8, dropout=0.0, shuffle_buffer=0,
        adv_weight=0.1, consistency_weight=0.5,  # every loss term trains something
    ).validate()  # fmt: skip
    data = prepare_data(config)
    keras.utils.set_random_seed(3)
    model = trainer.compiled_model(config, data)
    model.save_weights(str(folder / "tf.weights.h5"))
    model_config = model.get_config()
    with open(folder / "model.json", "w") as f:
        json.dump({name: model_config[name] for name in MODEL_ARGS}, f)
    inputs, label = next(iter(data.train))
    inputs = {k: v.numpy() for k, v in inputs.items()}
    np.savez(folder / "batch.npz", label=label.numpy(), **inputs)
    y_pred = model(inputs, training=False)
    terms = {k: float(v) for k, v in model.loss_terms(inputs, label, y_pred).items()}
    outputs = {k: np.asarray(v) for k, v in y_pred.items()}
    return folder, model, (inputs, label.numpy()), outputs, terms


@pytest.fixture(scope="module")
def backend_runs(tf_reference):
    """Starts one subprocess per installed backend (in parallel); backend -> result or None."""
    folder = tf_reference[0]
    processes = {}
    for backend in BACKENDS:
        if importlib.util.find_spec(backend) is None:
            processes[backend] = None
            continue
        env = dict(
            os.environ,
            KERAS_BACKEND=backend,
            PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
            # Correctness, not speed: spend less time compiling each JAX op.
            XLA_FLAGS="--xla_backend_optimization_level=0",
        )
        processes[backend] = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    results = {}
    for backend, process in processes.items():
        if process is None:
            results[backend] = None
            continue
        output, _ = process.communicate(timeout=600)
        lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
        assert process.returncode == 0 and lines, f"{backend} worker failed:\n{output[-4000:]}"
        results[backend] = json.loads(lines[-1][len("RESULT ") :])
    return results


def _result(backend_runs, backend):
    result = backend_runs[backend]
    if result is None:
        reason = f"KERAS_BACKEND={backend}: the {backend} package is not installed"
        skip_unless_ci(reason)
    return result


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_and_compute_loss_match_tensorflow(backend_runs, tf_reference, backend):
    _, _, _, outputs, terms = tf_reference
    result = _result(backend_runs, backend)
    assert result["backend"] == backend
    assert set(result["outputs"]) == set(outputs)
    for name, value in outputs.items():
        np.testing.assert_allclose(
            result["outputs"][name], value, rtol=1e-4, atol=1e-5, err_msg=name
        )
    assert result["output_dtypes"] == ["float32"]
    assert set(result["terms"]) == set(terms)
    for name, value in terms.items():
        assert result["terms"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert result["loss"] == pytest.approx(terms["loss"], rel=1e-4)


def test_torch_train_step_runs_compute_loss(backend_runs):
    result = _result(backend_runs, "torch")
    logs = result["train_logs"]
    terms = ("loss", "in_loss", "out_loss", "domain_loss", "decoupling_loss", "prediction_loss")
    for name in terms:
        assert np.isfinite(logs[name]), name
    assert logs["loss"] > 0
    assert result["weights_changed"] == result["num_weights"]


def test_tf_train_step_loss_equals_compute_loss(tf_reference):
    """Keras' TF train_step reports the loss compute_loss gives on the same inputs."""
    _, model, (inputs, label), _, _ = tf_reference
    generators = keras_compat.seed_generators(model)
    states = [g.state.numpy() for g in generators]  # same Gaussian samples for both paths
    expected = model.loss_terms(inputs, label, model(inputs, training=True))
    for generator, state in zip(generators, states):
        generator.state.assign(state)
    weights = [w.numpy() for w in model.trainable_weights]
    model.reset_metrics()
    logs = model.train_step((inputs, label))
    for name, value in expected.items():
        assert float(logs[name]) == pytest.approx(float(value), rel=1e-5), name
    after = [w.numpy() for w in model.trainable_weights]
    changed = sum(not np.array_equal(a, b) for a, b in zip(weights, after))
    assert changed > 0
