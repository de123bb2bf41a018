"""Resumable and reproducible training (docs/design.md §8): kill, resume, compare; rerun, compare.

Every run is a separate `python` process (a fresh TF runtime, as after a crash) training a
tiny text-only MIDG for 3 epochs with `--deterministic`. Run B is killed with SIGKILL in
the middle of its 2nd epoch, then started again on the same workdir: it must end with
exactly the history, metrics and predictions of run A, which was never interrupted. Run C
repeats run A in another process: `--deterministic` runs are bit-identical. A, B and C
start together; B is restarted as soon as it is killed.
"""

import csv
import io
import os
import signal
import subprocess
import sys

import pytest

from tests.fake_mmsa import make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILLED_EPOCH = 1  # 0-based: killed after epoch 1 of 3 completed, at batch 2 of epoch 2

# argv: workdir, source, kill_epoch (-1: never). Kills itself with SIGKILL (no cleanup runs).
WORKER = r"""
import os, signal, sys
import tensorflow as tf

# Grappler's graph rewrites take a fifth of each process's time and are not under test;
# every run here is compiled the same way.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
from midg_keras.config import Config
from midg_keras.training import experiment, trainer

workdir, source, kill_epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])


class KillMidEpoch(trainer.StopOnNonFiniteLoss):
    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch == kill_epoch and batch == 1:
            os.kill(os.getpid(), signal.SIGKILL)


trainer.StopOnNonFiniteLoss = KillMidEpoch
config = Config(
    source=source, modalities="t", hidden_dim=16, num_heads=2, num_experts=2, batch_size=8,
    epochs=3, patience=2, seed=7, deterministic=True, verbose=0, workdir=workdir,
).validate()
experiment.run(config, log=lambda _: None)
"""

OUTPUTS = ("history.csv", "metrics.json", os.path.join("predictions", "test.csv"))


def _start(workdir, source, kill_epoch=-1):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(workdir), source, str(kill_epoch)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process, expected_returncode=0):
    output, _ = process.communicate(timeout=900)
    assert process.returncode == expected_returncode, output[-4000:]


def _read(workdir, name):
    with open(os.path.join(workdir, name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    pickle_path = root / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(24, 8, 8)), str(pickle_path))
    source = f"pickle:{pickle_path}"
    workdirs = {name: root / name for name in ("a", "b", "c")}
    uninterrupted = [_start(workdirs["a"], source), _start(workdirs["c"], source)]
    _finish(_start(workdirs["b"], source, KILLED_EPOCH), -signal.SIGKILL)
    killed = {
        "history": _read(workdirs["b"], "history.csv"),
        "backup": sorted(os.listdir(workdirs["b"] / "backup")),
        "has_metrics": os.path.exists(workdirs["b"] / "metrics.json"),
    }
    resumed = _start(workdirs["b"], source)  # while A and C still run
    for process in uninterrupted + [resumed]:
        _finish(process)
    return workdirs, killed


def test_killed_run_left_a_backup_of_its_completed_epoch(runs):
    _, killed = runs
    assert not killed["has_metrics"]
    assert killed["history"].decode().count("\n") == 1 + KILLED_EPOCH  # header + epoch 1
    assert "latest.weights.h5" in killed["backup"]
    assert f"random_state_epoch{KILLED_EPOCH}.npz" in killed["backup"]


def test_resumed_run_ends_exactly_as_uninterrupted_run(runs):
    workdirs, _ = runs
    history = _read(workdirs["b"], "history.csv").decode().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1", "2"]
    for name in OUTPUTS:
        assert _read(workdirs["b"], name) == _read(workdirs["a"], name), name
    assert not os.path.exists(workdirs["b"] / "backup")  # removed once training completed


def test_deterministic_runs_are_bit_identical(runs):
    workdirs, _ = runs
    for name in OUTPUTS:
        assert _read(workdirs["c"], name) == _read(workdirs["a"], name), name
    # The runs did learn: the three epochs' losses are not all the same number.
    rows = list(csv.DictReader(io.StringIO(_read(workdirs["a"], "history.csv").decode())))
    assert len({row["loss"] for row in rows}) == 3
