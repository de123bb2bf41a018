"""`--distribute=multiworker` for real: BUILD.md's two-worker command on localhost ports.

Two `train.py` processes (through `tests/multiworker_entry.py`, which only adds a record
of every step's loss and the trained weights) form a `MultiWorkerMirroredStrategy`
cluster from `TF_CONFIG`, each with the same flagfile, `--distribute=multiworker` and
shared `--workdir`, as BUILD.md's "Distributed training" says. A third process trains
the same flags on one device. Checked:

- the first step's loss equals the single device's (rel 1e-6): the global batch of 8 is
  split into two halves of 4, one per worker (`AutoShardPolicy.DATA`), and the reported
  loss is their all-reduced mean; later AdamW steps to rel 1e-4. What differs by
  construction is off (dropout, decoupling samples, simulated-shift draws, clipnorm);
- the workers stay in step: same number of steps, bit-identical per-step losses and
  bit-identical trained weights on both;
- only the chief writes `--workdir`: it holds exactly the files of a single-device run,
  and worker 1 wrote into its own scratch folder (under its `TMPDIR`), which is gone when
  it exits.

The processes are killed if anything fails or takes longer than `TIMEOUT` seconds.
"""

import csv
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from midg_keras.config import Config
from midg_keras.training import distribute
from tests.fake_mmsa import make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(REPO, "tests", "multiworker_entry.py")
STEPS = 3
TIMEOUT = 240  # seconds for all three processes together
# A tiny MIDG, nothing random in a step: one device and two workers train the same run.
FLAGS = """\
--modalities=t
--hidden_dim=8
--num_heads=2
--num_experts=2
--encoder_layers=1
--dropout=0
--use_decoupling=false
--clipnorm=0
--shift_crop=0
--shift_frame_drop=0
--shift_channel_drop=0
--shift_stats=0
--shuffle_buffer=0
--batch_size=8
--epochs=1
--steps_per_epoch={steps}
--patience=0
--verbose=0
--mixed_precision=float32
"""


class FakeStrategy:
    """What `distribute.is_chief` reads of a MultiWorkerMirroredStrategy: worker `index` of 2."""

    def __init__(self, index):
        cluster = {"worker": ["a:1", "b:1"]}

        class Resolver:
            task_type, task_id = "worker", index

            def cluster_spec(self):
                class Spec:
                    def as_dict(self):
                        return cluster

                return Spec()

        self.cluster_resolver = Resolver()


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def files_under(folder):
    """Relative paths of every file under `folder`; TensorBoard event files by folder only."""
    found = set()
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.relpath(os.path.join(root, name), folder)
            found.add(os.path.dirname(path) + "/<events>" if "tfevents" in name else path)
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiworker")
    pickle_path = root / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(8 * STEPS, 8, 8)), str(pickle_path))
    flagfile = root / "tiny.flags"
    flagfile.write_text(f"--source=pickle:{pickle_path}\n" + FLAGS.format(steps=STEPS))
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    base_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    base_env.pop("TF_CONFIG", None)
    commands = {
        "single": ("none", root / "single", None),
        "worker0": ("multiworker", root / "shared", 0),
        "worker1": ("multiworker", root / "shared", 1),
    }
    processes, logs = {}, {}
    try:
        for name, (strategy, workdir, index) in commands.items():
            env = dict(base_env)
            scratch = root / f"tmp_{name}"
            scratch.mkdir()
            env["TMPDIR"] = str(scratch)  # where a non-chief's scratch folder goes
            if index is not None:
                env["TF_CONFIG"] = json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                )
            logs[name] = open(root / f"{name}.log", "w")
            processes[name] = subprocess.Popen(
                [
                    sys.executable,
                    ENTRY,
                    str(root / f"{name}.json"),
                    f"--flagfile={flagfile}",
                    f"--distribute={strategy}",
                    f"--workdir={workdir}",
                ],
                cwd=REPO,
                env=env,
                stdout=logs[name],
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + TIMEOUT
        for process in processes.values():
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        for log in logs.values():
            log.close()
    failed = {
        name: (root / f"{name}.log").read_text()[-3000:]
        for name, process in processes.items()
        if process.returncode != 0 or not (root / f"{name}.json").exists()
    }
    assert not failed, failed
    records = {name: json.loads((root / f"{name}.json").read_text()) for name in commands}
    return records, root


def test_every_process_trained_the_same_steps_on_its_replicas(runs):
    records, _ = runs
    assert records["single"]["replicas"] == 1
    assert records["worker0"]["replicas"] == records["worker1"]["replicas"] == 2
    assert records["worker0"]["task"] == {"type": "worker", "index": 0}
    assert records["worker1"]["task"] == {"type": "worker", "index": 1}
    assert all(record["steps"] == STEPS for record in records.values())


def test_first_step_loss_equals_the_single_device_one(runs):
    records, _ = runs
    single, worker = records["single"]["step_losses"], records["worker0"]["step_losses"]
    assert worker[0] == pytest.approx(single[0], rel=1e-6)
    # Later steps follow from the all-reduced AdamW update: still the same run.
    np.testing.assert_allclose(worker, single, rtol=1e-4)
    assert len(set(single)) == STEPS  # the weights did change between steps
    assert records["worker0"]["weights_sum"] == pytest.approx(
        records["single"]["weights_sum"], rel=1e-4
    )


def test_both_workers_stay_in_step(runs):
    records, _ = runs
    assert records["worker0"]["step_losses"] == records["worker1"]["step_losses"]
    assert records["worker0"]["weights_sha256"] == records["worker1"]["weights_sha256"]


def test_the_chief_history_is_the_recorded_steps(runs):
    records, root = runs
    with open(root / "shared" / "history.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["loss"]) == pytest.approx(np.mean(records["worker0"]["step_losses"]), rel=1e-5)


def test_only_the_chief_writes_the_workdir(runs):
    records, root = runs
    shared = str(root / "shared")
    # The chief wrote the shared workdir itself; worker 1 every workdir in its scratch folder.
    assert records["worker0"]["workdirs"]
    assert all(local == given == shared for given, local in records["worker0"]["workdirs"])
    scratch = str(root / "tmp_worker1")
    assert records["worker1"]["workdirs"]
    for given, local in records["worker1"]["workdirs"]:
        assert given == shared and local.startswith(scratch + os.sep), local
    # ... which it removed on exit; the workdir holds exactly a single-device run's files.
    assert os.listdir(scratch) == []
    assert files_under(shared) == files_under(root / "single")
    assert {"model.keras", "history.csv", "metrics.json", "results.md"} <= files_under(shared)


def test_a_restarted_worker_resumes_from_the_chief_backup(monkeypatch, tmp_path):
    """A non-chief reads the chief's resume state into its scratch copy, never writes it."""
    shared = tmp_path / "shared"
    (shared / "backup").mkdir(parents=True)
    (shared / "backup" / "training_metadata.json").write_text('{"epoch": 2}')
    (shared / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    (shared / "model.keras").write_bytes(b"best")
    (shared / "metrics.json").write_text("{}")  # not resume state: not copied
    before = files_under(shared)
    monkeypatch.setattr(distribute, "_scratch", {"root": str(tmp_path / "scratch")})
    config = Config(distribute="multiworker")
    local = distribute.worker_workdir(str(shared), config, FakeStrategy(1))
    assert local.startswith(str(tmp_path / "scratch") + os.sep)
    assert files_under(local) == {"backup/training_metadata.json", "history.csv", "model.keras"}
    assert (tmp_path / "scratch").exists() and files_under(shared) == before
    # The worker's own later writes are kept: a second call copies nothing over them.
    with open(os.path.join(local, "history.csv"), "a") as f:
        f.write("2,0.25\n")
    assert distribute.worker_workdir(str(shared), config, FakeStrategy(1)) == local
    assert open(os.path.join(local, "history.csv")).read().endswith("2,0.25\n")


def test_only_the_chief_exports(monkeypatch, tmp_path):
    """`--export_dir` after training (or `--mode=export`): one SavedModel version, the chief's."""
    import midg_keras.export
    import train

    exported = []
    monkeypatch.setattr(midg_keras.export, "export_workdir", lambda config: exported.append(1))
    for mode in ("export", "train"):
        config = Config(mode=mode, distribute="multiworker", export_dir=str(tmp_path / "x"))
        if mode == "train":  # the run itself is not what this checks
            monkeypatch.setattr("midg_keras.training.experiment.run", lambda *a, **k: None)
        train.run(config, FakeStrategy(1))
        assert exported == []
        train.run(config, FakeStrategy(0))
        assert exported == [1]
        exported.clear()
