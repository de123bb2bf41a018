"""Resumable and reproducible training (docs/design.md §8): kill, resume, compare; rerun, compare.

Every run is a separate `python` process (a fresh TF runtime, as after a crash) training a
tiny text-only MIDG with `--deterministic`, at most `EPOCHS` epochs with early stopping
(`PATIENCE`). The learning rate is high enough for this data's validation loss to stop
improving early, so run A, never interrupted, stops before `EPOCHS` (checked: the test
depends on it). Run B is killed with SIGKILL at batch 2 of A's *last* epoch S, then started
again on the same workdir. Its backup holds S epochs, the best epoch b < S and an
early-stopping wait of S - 1 - b = PATIENCE - 1:

* a resumed run that restores all of it trains epoch S only and stops there, like A;
* one that ignored its backup retrains from epoch 0 (its epoch log shows it);
* one that lost the early-stopping state (best = inf, wait = 0) counts epoch S as an
  improvement and trains on past A's last epoch; one that lost the checkpoint's best value
  saves epoch S's worse model as `model.keras`: its history, metrics or predictions differ.

Each process logs the epochs it begins. Run C repeats run A in another process:
`--deterministic` runs are bit-identical. A and C start together; B starts when A is done.
Everything runs twice: with the defaults, and with the options whose state a resume must
also restore (`OPTIONS`: the weight average, the learning-rate schedule, token dropout).
"""

import csv
import io
import json
import os
import signal

import pytest

from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.python_subprocess import start_python

EPOCHS, PATIENCE = 8, 2

# argv: workdir, source, kill_epoch (-1: never), epoch log. Kills itself with SIGKILL (no
# cleanup runs) at batch 2 of epoch kill_epoch; appends each epoch it begins to the log.
WORKER = r"""
import json, os, signal, sys
import tensorflow as tf

# Grappler's graph rewrites take a fifth of each process's time and are not under test;
# every run here is compiled the same way.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
from midg_keras.config import Config
from midg_keras.training import experiment, trainer

workdir, source, kill_epoch, epoch_log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
EPOCHS, PATIENCE, OPTIONS = int(sys.argv[5]), int(sys.argv[6]), json.loads(sys.argv[7])


class KillMidEpoch(trainer.StopOnNonFiniteLoss):
    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        with open(epoch_log, "a") as f:
            f.write(f"{epoch}\n")

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == kill_epoch and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


trainer.StopOnNonFiniteLoss = KillMidEpoch
config = Config(
    source=source, modalities="t", hidden_dim=16, num_heads=2, num_experts=2, batch_size=8,
    epochs=EPOCHS, patience=PATIENCE, learning_rate=1e-2, seed=7, deterministic=True,
    verbose=0, workdir=workdir, **OPTIONS,
).validate()
experiment.run(config, log=lambda _: None)
"""

OUTPUTS = ("history.csv", "metrics.json", os.path.join("predictions", "test.csv"))


# The training options whose state lives in the optimizer or the model's RNGs: a weight
# average swapped in and out each epoch, a schedule on the optimizer's step, token dropout.
OPTIONS = {
    "plain": {},
    "averaged_scheduled": {
        "ema_momentum": 0.5,
        "lr_schedule": "cosine",
        "warmup_epochs": 1.0,
        "token_dropout": 0.2,
    },
}


def _start(workdir, source, epoch_log, options, kill_epoch=-1):
    return start_python(
        WORKER, workdir, source, kill_epoch, epoch_log, EPOCHS, PATIENCE, json.dumps(options)
    )


def _finish(process, expected_returncode=0):
    output, _ = process.communicate(timeout=900)
    assert process.returncode == expected_returncode, output[-4000:]


def _read(workdir, name):
    with open(os.path.join(workdir, name), "rb") as f:
        return f.read()


def _history(workdir):
    return list(csv.DictReader(io.StringIO(_read(workdir, "history.csv").decode())))


def _epochs(path):
    with open(path) as f:
        return [int(line) for line in f]


@pytest.fixture(scope="module", params=sorted(OPTIONS))
def runs(tmp_path_factory, request):
    options = OPTIONS[request.param]
    root = tmp_path_factory.mktemp(f"resume_{request.param}")
    pickle_path = root / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(24, 8, 8)), str(pickle_path))
    source = f"pickle:{pickle_path}"
    workdirs = {name: root / name for name in ("a", "b", "c")}
    logs = {name: root / f"epochs_{name}.txt" for name in ("a", "b_killed", "b_resumed", "c")}
    run_a = _start(workdirs["a"], source, logs["a"], options)
    run_c = _start(workdirs["c"], source, logs["c"], options)
    _finish(run_a)
    last_epoch = len(_history(workdirs["a"])) - 1  # S: where A's early stopping stopped it
    _finish(_start(workdirs["b"], source, logs["b_killed"], options, last_epoch), -signal.SIGKILL)
    killed = {
        "history": _read(workdirs["b"], "history.csv"),
        "backup": sorted(os.listdir(workdirs["b"] / "backup")),
        "has_metrics": os.path.exists(workdirs["b"] / "metrics.json"),
    }
    resumed = _start(workdirs["b"], source, logs["b_resumed"], options)  # while C still runs
    for process in (run_c, resumed):
        _finish(process)
    epochs = {name: _epochs(path) for name, path in logs.items()}
    return workdirs, killed, last_epoch, epochs


def test_uninterrupted_run_stopped_early_after_its_best_epoch(runs):
    """The premise of the resume test: A's early stopping, not --epochs, ended it."""
    workdirs, _, last_epoch, epochs = runs
    values = [float(row["val_prediction_loss"]) for row in _history(workdirs["a"])]
    best_epoch = values.index(min(values))
    assert last_epoch < EPOCHS - 1, f"A ran all {EPOCHS} epochs: {values}"
    assert last_epoch - best_epoch == PATIENCE
    assert epochs["a"] == list(range(last_epoch + 1))


def test_killed_run_left_a_backup_of_its_completed_epochs(runs):
    _, killed, last_epoch, epochs = runs
    assert epochs["b_killed"] == list(range(last_epoch + 1))  # killed inside epoch S
    assert not killed["has_metrics"]
    assert killed["history"].decode().count("\n") == 1 + last_epoch  # header + S epochs
    assert "latest.weights.h5" in killed["backup"]
    assert f"random_state_epoch{last_epoch}.npz" in killed["backup"]


def test_resumed_run_trains_only_the_epochs_after_its_backup(runs):
    """Restored early-stopping state stops it at epoch S, as A stopped."""
    _, _, last_epoch, epochs = runs
    assert epochs["b_resumed"] == [last_epoch]


def test_resumed_run_ends_exactly_as_uninterrupted_run(runs):
    workdirs, _, last_epoch, _ = runs
    history = _history(workdirs["b"])
    assert [row["epoch"] for row in history] == [str(e) for e in range(last_epoch + 1)]
    for name in OUTPUTS:
        assert _read(workdirs["b"], name) == _read(workdirs["a"], name), name
    assert not os.path.exists(workdirs["b"] / "backup")  # removed once training completed


def test_deterministic_runs_are_bit_identical(runs):
    workdirs, _, _, epochs = runs
    assert epochs["c"] == epochs["a"]
    for name in OUTPUTS:
        assert _read(workdirs["c"], name) == _read(workdirs["a"], name), name
    # The runs did learn: the epochs' losses are not all the same number.
    rows = _history(workdirs["a"])
    assert len({row["loss"] for row in rows}) == len(rows)


def test_model_keras_is_the_epoch_with_the_lowest_source_validation_loss(runs):
    """Early stopping ran past the best epoch; model.keras is still the best epoch's model."""
    import keras

    import midg_keras.models  # noqa: F401  (registers MIDG for load_model)
    from midg_keras.config import Config
    from midg_keras.data.pipeline import prepare_data

    workdirs, _, last_epoch, _ = runs
    values = [float(row["val_prediction_loss"]) for row in _history(workdirs["a"])]
    assert min(values) < values[last_epoch]  # the last epoch is not the best one
    config = Config.from_json(_read(workdirs["a"], "config.json").decode())
    model = keras.saving.load_model(os.path.join(workdirs["a"], "model.keras"))
    scores = model.evaluate(prepare_data(config).validation, return_dict=True, verbose=0)
    assert scores["prediction_loss"] == pytest.approx(min(values), rel=1e-5)
