"""Faults during long work (docs/design.md §8, §10): SIGKILL at chosen points, then resume.

A tiny text-only experiment, ERM with MIDG as its baseline, is killed three times during
MIDG's training, each time at another point, and restarted on the same workdir after each
kill: in the middle of a training epoch, in the middle of Keras' validation pass, and
while the backup's weights are half written (the file is cut in half before the kill, as
a torn write leaves it). The restarts keep the finished ERM run and resume MIDG; the fourth
start must end with exactly the histories, metrics, predictions and results.md of an
experiment that was never interrupted (`--deterministic`; that two uninterrupted runs are
bit-identical is tests/test_resume.py's check). An export killed after writing its SavedModel but before publishing it must leave
no version TF Serving would load.

The kill points are callbacks and wrappers installed by the worker script below, in the
child process only: the library has no test hooks.
"""

import json
import os
import signal

import pytest

from midg_keras.export import next_version
from midg_keras.training import resume
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.python_subprocess import start_python

EPOCHS = 3
# (point, 0-based epoch) of each kill, in order; each start resumes the previous one's backup.
KILLS = (("train_batch", 1), ("validation", 2), ("torn_backup", 2))
RUN_OUTPUTS = ("history.csv", "metrics.json", os.path.join("predictions", "test.csv"))
MIDG_RUN = os.path.join("baselines", "midg")

# argv: workdir, source, epochs, kill point ("none", or a KILLS point), kill epoch.
TRAIN_WORKER = r"""
import os, signal, sys
import tensorflow as tf

tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
import keras
from midg_keras.config import Config
from midg_keras.training import experiment, resume, trainer

workdir, source, epochs, point, kill_epoch = sys.argv[1:]
epochs, kill_epoch = int(epochs), int(kill_epoch)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtPoint(trainer.StopOnNonFiniteLoss):
    def at(self, wanted):
        return point == wanted and self.model.name == "midg" and self.epoch == kill_epoch

    def on_train_batch_begin(self, batch, logs=None):
        if self.at("train_batch") and batch == 1:
            die()

    def on_test_batch_begin(self, batch, logs=None):
        if self.at("validation") and batch == 0:
            die()


KILLER = KillAtPoint()  # set_model() by each fit, before the fit's first batch
trainer.StopOnNonFiniteLoss = lambda: KILLER
save_weights = keras.Model.save_weights


def tearing_save_weights(self, filepath, *args, **kwargs):
    save_weights(self, filepath, *args, **kwargs)
    if filepath.endswith(resume.PENDING_WEIGHTS) and KILLER.at("torn_backup"):
        with open(filepath, "r+b") as f:
            f.truncate(os.path.getsize(filepath) // 2)
        die()


keras.Model.save_weights = tearing_save_weights
config = Config(
    source=source, model="erm", baselines="midg", modalities="t", hidden_dim=8, num_heads=2,
    num_experts=2, batch_size=8,
    epochs=epochs, patience=0, seed=5, deterministic=True, verbose=0,
    workdir=workdir,
).validate()
experiment.run(config, log=lambda _: None)
"""

# argv: workdir, export_dir. Killed once the SavedModel is written, as it is to be renamed.
EXPORT_WORKER = r"""
import os, signal, sys
from midg_keras.config import Config
from midg_keras.export import export_workdir

rename = os.rename


def die_before_publishing(source, target):
    if os.path.basename(source).startswith(".tmp-"):
        os.kill(os.getpid(), signal.SIGKILL)
    rename(source, target)


os.rename = die_before_publishing
export_workdir(Config(workdir=sys.argv[1], export_dir=sys.argv[2]), log=lambda _: None)
"""


def _start(script, *args):
    return start_python(script, *args, TF_CPP_MIN_LOG_LEVEL="2")


def _finish(process, expected_returncode, what):
    output, _ = process.communicate(timeout=600)
    assert process.returncode == expected_returncode, f"{what}:\n{output[-4000:]}"


def _read(folder, name):
    with open(os.path.join(folder, name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    pickle_path = root / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(24, 8, 8)), str(pickle_path))
    source = f"pickle:{pickle_path}"
    uninterrupted, killed, exports = root / "uninterrupted", root / "killed", root / "exports"
    reference = _start(TRAIN_WORKER, uninterrupted, source, EPOCHS, "none", -1)
    chain = _start(TRAIN_WORKER, killed, source, EPOCHS, *KILLS[0])
    _finish(reference, 0, "uninterrupted run")
    export = _start(EXPORT_WORKER, uninterrupted, exports)  # while the chain goes on
    states = []
    for index, (point, epoch) in enumerate(KILLS):
        _finish(chain, -signal.SIGKILL, f"run killed at {point} of epoch {epoch}")
        if not index:
            erm_model = _read(killed, "model.keras")  # finished before MIDG started
        states.append((_backed_up_epoch(killed / MIDG_RUN), _has_torn_weights(killed / MIDG_RUN)))
        following = KILLS[index + 1] if index + 1 < len(KILLS) else ("none", -1)
        chain = _start(TRAIN_WORKER, killed, source, EPOCHS, *following)
    _finish(chain, 0, "run resumed after the last kill")
    _finish(export, -signal.SIGKILL, "export killed before publishing")
    assert _read(killed, "model.keras") == erm_model, "the finished ERM run was trained again"
    return uninterrupted, killed, exports, states


def _backed_up_epoch(workdir):
    with open(os.path.join(workdir, "backup", resume.BACKUP_METADATA)) as f:
        return json.load(f)["epoch"]


def _has_torn_weights(workdir):
    return os.path.exists(os.path.join(workdir, "backup", resume.PENDING_WEIGHTS))


def test_each_kill_left_the_last_whole_epochs_backup(faults):
    _, _, _, states = faults
    # train_batch in epoch 1: epoch 0 backed up; validation of epoch 2: epochs 0-1; torn
    # backup write at the end of epoch 2: the commit never happened, epochs 0-1 stand.
    assert states == [(1, False), (2, False), (2, True)]


def test_experiment_killed_three_times_ends_as_the_uninterrupted_one(faults):
    uninterrupted, killed, _, _ = faults
    outputs = ["results.md"]
    outputs += [os.path.join(run, name) for run in ("", MIDG_RUN) for name in RUN_OUTPUTS]
    for name in outputs:
        assert _read(killed, name) == _read(uninterrupted, name), name
    history = _read(killed / MIDG_RUN, "history.csv").decode().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(EPOCHS)]
    leftovers = [name for name in os.listdir(killed / MIDG_RUN) if name.startswith("backup")]
    assert leftovers == [], leftovers
    assert not os.path.exists(killed / MIDG_RUN / "model.partial.keras")


def test_killed_export_publishes_no_version(faults):
    _, _, exports, _ = faults
    entries = os.listdir(exports)
    assert not [entry for entry in entries if entry.isdigit()], entries
    (staging,) = entries  # the SavedModel was written, under a name TF Serving skips
    assert staging.startswith(".tmp-1-")
    for name in ("saved_model.pb", "assets.extra/midg_export.json"):
        assert os.path.exists(exports / staging / name), name
    assert next_version(str(exports)) == 1
