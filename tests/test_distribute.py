"""`--distribute` (docs/design.md §8): MirroredStrategy on 2 logical CPU devices = one device.

Logical devices must be configured before TensorFlow starts, so the runs happen in a
subprocess. The same tiny MIDG (same seed, same unshuffled batches) trains 3 steps on one
device (its train_step called eagerly) and with `model.fit` under MirroredStrategy with
2 replicas (each gets half of every batch of 8).
The comparison turns off what legitimately differs between a batch of 8 and two halves of
4: dropout and the decoupling's Gaussian samples (random draws per replica), the router's
batch-level load-balance loss (dense router) and gradient clipping (Keras clips each
replica's gradient before the all-reduce). Then `trainer.train` runs a whole mirrored
epoch of the (quicker to trace) ERM baseline with every callback (checkpoint, backup) and
scores the best model.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from midg_keras.config import Config, ConfigError
from midg_keras.training import distribute
from tests.fake_mmsa import make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3

WORKER = r"""
import json, sys
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data
from midg_keras.training import distribute, runtime, trainer
from midg_keras.training.callbacks import GradientReversalSchedule

source, workdir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
# One strategy per process, as train.py makes it: every mirrored model below shares it.
MIRRORED = distribute.create_strategy(Config(distribute="mirrored"))
STRATEGIES = {"none": None, "mirrored": MIRRORED}


def compiled(distribute_name):
    config = Config(
        source=source, modalities="t", hidden_dim=16, num_heads=2, num_experts=2, batch_size=8,
        dropout=0.0, use_decoupling=False, clipnorm=0.0, shuffle_buffer=0,
        distribute=distribute_name, adv_weight=0.1,
        # No random draws: each replica would draw its own shift for its half of the batch.
        shift_crop=0.0, shift_frame_drop=0.0, shift_channel_drop=0.0, shift_stats=0.0,
    ).validate()
    data = prepare_data(config)
    runtime.seed_everything(config)
    model = trainer.compiled_model(config, data, strategy=STRATEGIES[distribute_name])
    schedule = GradientReversalSchedule(model.gradient_reversal, steps_per_epoch=steps, epochs=2)
    schedule.set_model(model)
    initial = float(sum(np.abs(w.numpy()).sum() for w in model.trainable_weights))
    return data, model, schedule, initial


def validation_terms(model, data):
    terms = [model.loss_terms(x, y, model(x, training=False)) for x, y in data.validation]
    return {name: float(np.mean([t[name] for t in terms])) for name in terms[0]}


# One device: the same train_step, called eagerly step by step (no tracing needed).
data, model, schedule, initial = compiled("none")
losses = []
for step, batch in zip(range(steps), data.train):
    schedule.on_train_batch_begin(step)
    model.reset_metrics()
    losses.append(float(model.train_step(batch)["loss"]))
results = {"none": {
    "replicas": 1, "initial_weights_sum": initial, "step_losses": losses,
    "validation": validation_terms(model, data),
    "grl_lambda": float(model.gradient_reversal.grl_lambda.numpy()),
}}


class StepLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.running_means = []

    def on_train_batch_end(self, batch, logs=None):
        self.running_means.append(float(logs["loss"]))


# Two replicas: model.fit as the trainer runs it.
data, model, schedule, initial = compiled("mirrored")
recorder = StepLosses()
with distribute.fit_scope(model):
    model.fit(
        data.train.repeat(), epochs=1, steps_per_epoch=steps, callbacks=[recorder, schedule],
        verbose=0,
    )
means = np.asarray(recorder.running_means)
counts = np.arange(1, len(means) + 1)
results["mirrored"] = {
    "replicas": model.distribute_strategy.num_replicas_in_sync,
    "initial_weights_sum": initial,
    "step_losses": (means * counts - np.concatenate([[0.0], means[:-1] * counts[:-1]])).tolist(),
    "validation": validation_terms(model, data),
    "grl_lambda": float(model.gradient_reversal.grl_lambda.numpy()),
}

# One plain-SGD step of the ERM baseline on the first batch of 8, and its val losses.
def sgd_first_update(distribute_name):
    config = Config(
        source=source, model="erm", modalities="t", hidden_dim=16, num_heads=2, batch_size=8,
        dropout=0.0, clipnorm=0.0, shuffle_buffer=0, distribute=distribute_name,
    ).validate()
    data = prepare_data(config)
    runtime.seed_everything(config)
    with distribute.model_scope(config, STRATEGIES[distribute_name]):
        model = trainer.build_model(config, data)
        model.build_weights()
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5))
        model.optimizer.build(model.trainable_variables)
    def flat():
        return np.concatenate([w.numpy().ravel() for w in model.trainable_weights])

    initial = flat()
    with distribute.fit_scope(model):
        history = model.fit(
            data.train, validation_data=data.validation, epochs=1, steps_per_epoch=1, verbose=0
        )
    return {
        "initial": initial.tolist(), "updated": flat().tolist(),
        "val_loss": history.history["val_loss"][0],
        "val_prediction_loss": history.history["val_prediction_loss"][0],
    }


results["sgd"] = {name: sgd_first_update(name) for name in ("none", "mirrored")}

config = Config(
    source=source, model="erm", modalities="t", hidden_dim=16, num_heads=2, batch_size=8,
    epochs=1, distribute="mirrored", verbose=0, workdir=workdir,
).validate()
results["trainer"] = trainer.train(
    config, prepare_data(config), workdir, strategy=MIRRORED
)["test"]
print("RESULT " + json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("distribute")
    pickle_path = root / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(8 * STEPS, 8, 8)), str(pickle_path))
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.run(
        [sys.executable, "-c", WORKER, f"pickle:{pickle_path}", str(root / "run"), str(STEPS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and lines, (process.stdout + process.stderr)[-4000:]
    return json.loads(lines[-1][len("RESULT ") :]), root / "run"


def test_mirrored_strategy_has_two_replicas_and_the_same_initial_weights(runs):
    results, _ = runs
    assert results["none"]["replicas"] == 1 and results["mirrored"]["replicas"] == 2
    assert results["mirrored"]["initial_weights_sum"] == results["none"]["initial_weights_sum"]


def test_mirrored_first_step_loss_matches_single_device(runs):
    results, _ = runs
    single = results["none"]["step_losses"]
    mirrored = results["mirrored"]["step_losses"]
    assert len(single) == len(mirrored) == STEPS
    assert mirrored[0] == pytest.approx(single[0], rel=1e-6)
    # Later steps follow from the update averaged over replicas: still the same run.
    np.testing.assert_allclose(mirrored, single, rtol=1e-4)
    assert len(set(single)) == STEPS  # the weights did change between steps


def test_mirrored_validation_terms_and_grl_schedule_match(runs):
    results, _ = runs
    single, mirrored = results["none"]["validation"], results["mirrored"]["validation"]
    for name in ("in_loss", "out_loss", "domain_loss", "prediction_loss", "loss"):
        assert mirrored[name] == pytest.approx(single[name], rel=1e-4), name
    assert results["none"]["grl_lambda"] > 0  # the schedule ran: lambda of the last step
    assert results["mirrored"]["grl_lambda"] == results["none"]["grl_lambda"]


def test_mirrored_sgd_first_update_matches_one_device_with_the_same_global_batch(runs):
    """Each replica's loss is divided by the replicas: the summed gradient is the mean's."""
    results, _ = runs
    single, mirrored = results["sgd"]["none"], results["sgd"]["mirrored"]
    np.testing.assert_array_equal(mirrored["initial"], single["initial"])
    initial = np.asarray(single["initial"])
    single_step = np.subtract(single["updated"], initial)
    mirrored_step = np.subtract(mirrored["updated"], initial)
    assert np.abs(single_step).max() > 1e-3  # the update is large enough to tell 1x from 2x
    # The replicas' summed gradient is the global batch's: the same step, not 2x (or 1/2x).
    ratio = np.linalg.norm(mirrored_step) / np.linalg.norm(single_step)
    assert ratio == pytest.approx(1.0, abs=1e-3), f"mirrored step / one-device step = {ratio}"
    # The stated tolerance tells the two apart: a doubled update would be outside it.
    rtol, atol = 1e-4, 1e-6
    assert not np.allclose(initial + 2 * single_step, single["updated"], rtol=rtol, atol=atol)
    np.testing.assert_allclose(mirrored["updated"], single["updated"], rtol=rtol, atol=atol)
    # The reported validation loss is the unscaled mean, not replicas x the mean.
    assert mirrored["val_loss"] == pytest.approx(single["val_loss"], rel=1e-4)
    assert mirrored["val_loss"] == pytest.approx(mirrored["val_prediction_loss"], rel=1e-4)


def test_trainer_runs_a_mirrored_epoch_end_to_end(runs):
    results, workdir = runs
    assert np.isfinite(results["trainer"]["MAE"])
    assert os.path.exists(workdir / "model.keras")
    assert not os.path.exists(workdir / "backup")


def test_multiworker_shards_data_by_element():
    import tensorflow as tf

    dataset = tf.data.Dataset.range(4)
    sharded = distribute.shard_for(dataset, Config(distribute="multiworker"))
    policy = sharded.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    assert distribute.shard_for(dataset, Config()) is dataset


def test_distribute_needs_the_tensorflow_backend(monkeypatch):
    monkeypatch.setattr(distribute.keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConfigError, match="KERAS_BACKEND=tensorflow"):
        distribute.create_strategy(Config(distribute="mirrored"))
    assert distribute.create_strategy(Config()) is None


@pytest.mark.parametrize(
    "cluster, task_type, task_id, chief",
    [
        ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
        ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
        ({}, None, None, True),  # no TF_CONFIG: a single worker
    ],
)
def test_only_the_chief_writes_to_the_shared_workdir(
    monkeypatch, tmp_path, cluster, task_type, task_id, chief
):
    class Resolver:
        def cluster_spec(self):
            class Spec:
                def as_dict(self):
                    return cluster

            return Spec()

    Resolver.task_type, Resolver.task_id = task_type, task_id

    class Strategy:
        cluster_resolver = Resolver()

    # Other workers write the same path in their scratch folder (tests/test_multiworker.py).
    monkeypatch.setattr(distribute, "_scratch", {"root": str(tmp_path)})
    expected = "run" if chief else os.path.join(tmp_path, os.path.abspath("run").lstrip(os.sep))
    config = Config(distribute="multiworker")
    assert distribute.is_chief(config, Strategy()) == chief
    assert distribute.worker_workdir("run", config, Strategy()) == expected
    assert distribute.worker_workdir("run", Config(distribute="mirrored"), Strategy()) == "run"


def test_a_strategy_that_does_not_match_distribute_is_refused():
    with pytest.raises(ValueError, match="--distribute=mirrored"):
        distribute.check_strategy(Config(distribute="mirrored"), None)
    with pytest.raises(ValueError, match="--distribute=none"):
        distribute.check_strategy(Config(), object())
    distribute.check_strategy(Config(), None)
