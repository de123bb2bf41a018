"""MIDG on the backend named by KERAS_BACKEND, from TensorFlow-written weights and a batch.

Usage (from the repository root; `tests/test_model_backends.py` runs it for JAX and PyTorch
in subprocesses and calls `run` in-process for TensorFlow, the reference):

    KERAS_BACKEND=jax PYTHONPATH=. python -m tests.backend_model_worker FOLDER

FOLDER holds `model.json` (MIDG's constructor arguments), `tf.weights.h5` and `batch.npz`.
Prints one `RESULT <json>` line: the forward pass (training=False) and every loss term,
then `SGD_STEPS` steps of Keras' own `train_step` with plain SGD on that batch, in
training mode (dropout 0 and no simulated-shift draws in the model's config, so the step
is deterministic), with the gradient reversal's λ set to `GRL_LAMBDA`: the weights before
and after, in model order, and each step's logs.
"""

import json
import os
import sys

import keras
import numpy as np

from midg_keras.models import MIDG

SGD_LEARNING_RATE, SGD_STEPS, GRL_LAMBDA = 0.1, 2, 0.5


def load_model(folder):
    arrays = dict(np.load(os.path.join(folder, "batch.npz")))
    label = arrays.pop("label")
    model = MIDG(**json.load(open(os.path.join(folder, "model.json"))))
    # Built by a symbolic call on the batch's shapes: no eager op-by-op pass to wait for. In
    # training mode, so the layers of the simulated out-of-domain stream are built too.
    model(
        {k: keras.KerasTensor(v.shape, dtype=str(v.dtype)) for k, v in arrays.items()},
        training=True,
    )
    model.load_weights(os.path.join(folder, "tf.weights.h5"))
    return model, arrays, label


def run(folder) -> dict:
    numpy = keras.ops.convert_to_numpy
    model, arrays, label = load_model(folder)
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
    result = {
        "backend": keras.backend.backend(),
        "outputs": {k: numpy(v).tolist() for k, v in y_pred.items()},
        "output_dtypes": sorted({str(numpy(v).dtype) for v in y_pred.values()}),
        "terms": {k: float(numpy(v)) for k, v in model.loss_terms(arrays, label, y_pred).items()},
        "loss": float(numpy(loss)),
    }
    model.gradient_reversal.grl_lambda.assign(GRL_LAMBDA)
    model.compile(optimizer=keras.optimizers.SGD(SGD_LEARNING_RATE))
    # In model order: auto-generated layer names (dense_4) depend on what the process built.
    result["weight_paths"] = [v.path for v in model.trainable_weights]
    result["initial_weights"] = [numpy(v).tolist() for v in model.trainable_weights]
    result["train_logs"] = []
    for _ in range(SGD_STEPS):
        logs = model.train_on_batch(arrays, label, return_dict=True)
        result["train_logs"].append({k: float(v) for k, v in logs.items()})
    result["sgd_weights"] = [numpy(v).tolist() for v in model.trainable_weights]
    return result


if __name__ == "__main__":
    print("RESULT " + json.dumps(run(sys.argv[1])))
