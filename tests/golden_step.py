"""One fixed training step of each model, summarized: the regression guard of speed work.

`step_summary(case)` seeds everything, builds a small model with dropout 0, and returns
its loss terms in training and inference mode plus the norm of each weight's gradient of
the training loss, on a fixed batch. `tests/data/golden_step.json` holds the summaries
written by the code before the speed work of issue 10 (`python -m tests.golden_step`);
`tests/test_golden_step.py` checks the current code reproduces them where the math is
meant to be unchanged.
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

GOLDEN_PATH = os.path.join(os.path.dirname(__file__), "data", "golden_step.json")
DIMS = {"text": 12, "audio": 5, "vision": 7}
LENGTHS = {"text": 9, "audio": 23, "vision": 30}
STRIDES = {"text": 1, "audio": 2, "vision": 3}
CASES = {
    "midg": {"model": "midg"},
    "midg_decoupling": {"model": "midg", "use_decoupling": True},
    "midg_adversary": {"model": "midg", "adv_weight": 0.5, "consistency_weight": 1.0},
    "erm": {"model": "erm"},
    "erm_shift": {"model": "erm_shift"},
}


def fixed_batch(size=5, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {}
    for key, dim in DIMS.items():
        inputs[key] = rng.normal(size=(size, LENGTHS[key], dim)).astype("float32")
        lengths = rng.integers(1, LENGTHS[key] + 1, size=size)
        lengths[0] = LENGTHS[key]
        inputs[f"{key}_mask"] = np.arange(LENGTHS[key])[None, :] < lengths[:, None]
        inputs[key][~inputs[f"{key}_mask"]] = 0.0
    inputs["source_index"] = np.zeros(size, "int32")
    return inputs, rng.uniform(-3, 3, size=size).astype("float32") / 3.0


def build(case):
    from midg_keras.models import MIDG, LateFusionBaseline

    settings = dict(CASES[case])
    name = settings.pop("model")
    common = dict(input_dims=DIMS, strides=STRIDES, hidden_dim=16, num_heads=2, dropout=0.0)
    if name == "midg":
        model = MIDG(num_experts=3, name=name, **common, **settings)
    else:
        model = LateFusionBaseline(simulate_shift=name == "erm_shift", name=name, **common)
    model.build_weights()
    return model


def step_summary(case):
    """Loss terms (train and eval) and per-weight gradient norms of one fixed step."""
    keras.utils.set_random_seed(1234)
    model = build(case)
    inputs, y = fixed_batch()
    inputs = {k: tf.constant(v) for k, v in inputs.items()}
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        terms = model.loss_terms(inputs, y, outputs)
    gradients = tape.gradient(terms["loss"], model.trainable_variables)
    evaluation = model.loss_terms(inputs, y, model(inputs, training=False))
    return {
        "train": {k: float(v) for k, v in terms.items()},
        "eval": {k: float(v) for k, v in evaluation.items()},
        "prediction": [float(v) for v in model(inputs, training=False)["prediction"]],
        # In weight-creation order; paths would carry Keras' global name counters.
        "gradient_norms": [
            [list(variable.shape), float(tf.norm(gradient)) if gradient is not None else None]
            for variable, gradient in zip(model.trainable_variables, gradients)
        ],
    }


if __name__ == "__main__":
    summaries = {case: step_summary(case) for case in CASES}
    os.makedirs(os.path.dirname(GOLDEN_PATH), exist_ok=True)
    with open(GOLDEN_PATH, "w") as f:
        json.dump(summaries, f, indent=1, sort_keys=True)
    print(f"wrote {GOLDEN_PATH}")
