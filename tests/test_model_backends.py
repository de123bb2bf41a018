"""MIDG's forward pass, loss and training steps on JAX and PyTorch against TensorFlow.

docs/design.md §8: one loss code path serves every backend. TensorFlow writes a tiny MIDG's
weights and a batch; `tests/backend_model_worker.py` loads them in subprocesses with
KERAS_BACKEND=jax / torch, and in this process for TensorFlow. Each backend must reproduce
TF's predictions and every loss term, and then, from the same weights and batch, Keras' own
`train_step` (which calls `compute_loss`) with plain SGD must update every weight as TF's
does: the training-mode paths (simulated stream, gradient reversal with λ > 0,
discriminator, consistency term) with dropout 0 and no random draws.
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
from tests import backend_model_worker
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.skips import skip_unless_ci

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("jax", "torch")

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
        # No random draws in training mode: each backend has its own random generator.
        shift_crop=0.0, shift_frame_drop=0.0, shift_channel_drop=0.0, shift_stats=0.0,
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
def tf_worker(tf_reference):
    """`backend_model_worker.run` on TensorFlow: the reference for the other backends."""
    return backend_model_worker.run(str(tf_reference[0]))


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
            [sys.executable, "-m", "tests.backend_model_worker", str(folder)],
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


# Each backend's SGD update (updated - initial weights) against TF's: relative error of the
# whole update, and per weight relative plus an absolute floor (in weight units) for weights
# whose true gradient is 0, e.g. the attention key biases: softmax ignores a shift shared by
# all keys, so their "update" is rounding noise on every backend.
UPDATE_RTOL, UPDATE_ATOL = 1e-3, 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_steps_update_every_weight_as_tensorflow_does(backend_runs, tf_worker, backend):
    result = _result(backend_runs, backend)
    assert len(result["initial_weights"]) == len(tf_worker["initial_weights"])
    tf_updates, updates = [], []
    for index, path in enumerate(tf_worker["weight_paths"]):
        initial = np.asarray(tf_worker["initial_weights"][index])
        np.testing.assert_array_equal(result["initial_weights"][index], initial, err_msg=path)
        tf_updates.append(np.asarray(tf_worker["sgd_weights"][index]) - initial)
        updates.append(np.asarray(result["sgd_weights"][index]) - initial)
        error = np.linalg.norm(updates[-1] - tf_updates[-1])
        bound = UPDATE_RTOL * np.linalg.norm(tf_updates[-1]) + UPDATE_ATOL
        assert error <= bound, f"{path}: update differs from TF's by {error:.3g} > {bound:.3g}"
    tf_all, all_ = (
        np.concatenate([u.ravel() for u in tf_updates]),
        np.concatenate([u.ravel() for u in updates]),
    )
    assert np.linalg.norm(all_ - tf_all) < UPDATE_RTOL * np.linalg.norm(tf_all)
    trained = [
        path
        for path, update in zip(tf_worker["weight_paths"], tf_updates)
        if np.abs(update).max() > 10 * UPDATE_ATOL
    ]
    untrained = set(tf_worker["weight_paths"]) - set(trained)
    assert all(path.endswith("key_projection/bias") for path in untrained), untrained
    assert len(result["train_logs"]) == len(tf_worker["train_logs"]) == 2
    for step, (logs, expected) in enumerate(zip(result["train_logs"], tf_worker["train_logs"])):
        assert set(logs) == set(expected)
        for name, value in expected.items():
            assert np.isfinite(logs[name]), (step, name)
            assert logs[name] == pytest.approx(value, rel=1e-4, abs=1e-6), (step, name)
    assert tf_worker["train_logs"][0]["domain_loss"] > 0


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
