"""Workdirs are never silently replaced (docs/design.md §8): locks, refusals, restarts.

Tiny text-only ERM runs (hidden_dim 8, 1 epoch) on a small MOSI-layout pickle; the
experiment-level tests share one two-seed, two-model workdir, built once.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data, target_slug
from midg_keras.training import experiment, resume
from midg_keras.training.workdir import (
    LOCK_FILE,
    WorkdirError,
    atomic_write,
    differing_flags,
    workdir_lock,
)
from tests.fake_mmsa import make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(
    model="erm", modalities="t", hidden_dim=8, num_heads=2, batch_size=8, epochs=1, verbose=0
)


def _source(folder, layout="mosi_unaligned", seed=0):
    path = folder / f"{layout}_{seed}.pkl"
    write_pickle(make_fake_mmsa(layout, sizes=(16, 8, 8), seed=seed), str(path))
    return f"pickle:{path}"


def _quiet(config, **kwargs):
    return experiment.run(config, log=lambda _: None, **kwargs)


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = f.read()
    return files


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write(str(path), "old")
    atomic_write(str(path), "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_lock_names_its_holder_and_is_released(tmp_path):
    with workdir_lock(str(tmp_path)):
        with pytest.raises(WorkdirError, match=f"is in use by pid {os.getpid()} on host "):
            with workdir_lock(str(tmp_path)):
                pass
    assert not os.path.exists(tmp_path / LOCK_FILE)
    with workdir_lock(str(tmp_path)):  # free again
        pass


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    # A SIGKILLed holder leaves its file; the kernel has dropped its flock.
    holder = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys; from midg_keras.training.workdir import workdir_lock\n"
            "with workdir_lock(sys.argv[1]): os.kill(os.getpid(), signal.SIGKILL)",
            str(tmp_path),
        ],
        cwd=REPO,
    )
    assert holder.returncode == -9
    assert os.path.exists(tmp_path / LOCK_FILE)
    with workdir_lock(str(tmp_path)):
        with open(tmp_path / LOCK_FILE) as f:
            assert json.load(f)["pid"] == os.getpid()


def test_differing_flags_ignore_flags_that_cannot_change_results():
    saved = Config(epochs=3, seeds="1,2", verbose=2, workdir="a").to_json()
    same = Config(epochs=3, seeds="1,2,3", verbose=0, workdir="b", baselines="erm", overwrite=True)
    assert differing_flags(saved, same) == []
    assert differing_flags(saved, same.replace(epochs=5, dropout=0.2)) == [
        "--dropout=0.1 (now 0.2)",
        "--epochs=3 (now 5)",
    ]


def test_interrupted_commit_is_completed_or_undone(tmp_path):
    def backup(*pending):
        folder = tmp_path / "backup"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        (folder / resume.BACKUP_WEIGHTS).write_text("epoch 2 weights")
        (folder / resume.BACKUP_METADATA).write_text('{"epoch": 1, "batch": 0}')
        for name in pending:
            (folder / name).write_text('{"epoch": 2, "batch": 0}')
        return folder

    # Killed between the two renames: the weights are epoch 2's, so the epoch becomes 2.
    folder = backup(resume.PENDING_METADATA)
    assert resume.resume_state(str(folder), str(tmp_path / "history.csv"), "loss").epoch == 2
    assert sorted(os.listdir(folder)) == [resume.BACKUP_WEIGHTS, resume.BACKUP_METADATA]
    # Killed before them: the pending files go, epoch 1 stands.
    folder = backup(resume.PENDING_WEIGHTS, resume.PENDING_METADATA)
    assert resume.resume_state(str(folder), str(tmp_path / "history.csv"), "loss").epoch == 1
    assert sorted(os.listdir(folder)) == [resume.BACKUP_WEIGHTS, resume.BACKUP_METADATA]


def test_each_fit_reads_the_same_shuffled_order(tmp_path):
    # An earlier run's pass over the data must not change a later run's order (a run kept
    # on restart does not iterate it at all).
    data = prepare_data(Config(source=_source(tmp_path), **TINY).validate())
    first = [labels.numpy().tolist() for _, labels in data.new_train()]
    again = [labels.numpy().tolist() for _, labels in data.new_train()]
    assert first == again


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    """A finished two-seed run of ERM and ERM + shift, and its outputs' bytes."""
    folder = tmp_path_factory.mktemp("experiment")
    config = Config(
        source=_source(folder),
        seeds="1,2",
        baselines="erm_shift",
        workdir=str(folder / "run"),
        **TINY,
    ).validate()
    results = _quiet(config)
    return config, results, _snapshot(config.workdir)


def test_finished_workdir_is_refused_in_one_line(experiment_dir):
    config, _, before = experiment_dir
    with pytest.raises(WorkdirError, match="holds a finished run .* pass --overwrite") as error:
        _quiet(config)
    assert "\n" not in str(error.value)
    assert _snapshot(config.workdir) == before


def test_interrupted_run_resumes_only_with_its_flags(experiment_dir, tmp_path):
    config, _, _ = experiment_dir
    workdir = tmp_path / "run"
    shutil.copytree(config.workdir, workdir)
    os.remove(workdir / "results.md")  # killed in seed 2's baseline: interrupted
    os.remove(workdir / "baselines" / "erm_shift" / "seed_2" / "metrics.json")
    other = config.replace(workdir=str(workdir), epochs=2, learning_rate=0.01)
    with pytest.raises(WorkdirError, match="started with other flags") as error:
        _quiet(other)
    message = str(error.value)
    assert "--epochs=1 (now 2)" in message and "--learning_rate=0.001 (now 0.01)" in message
    assert "\n" not in message and str(workdir / "seed_1") in message


def test_restart_keeps_finished_runs_and_trains_the_rest(experiment_dir, tmp_path):
    config, results, before = experiment_dir
    workdir = tmp_path / "run"
    shutil.copytree(config.workdir, workdir)
    os.remove(workdir / "results.md")
    os.remove(workdir / "baselines" / "erm_shift" / "seed_2" / "metrics.json")
    lines = []
    again = experiment.run(
        config.replace(workdir=str(workdir), verbose=2), log=lines.append
    )  # verbosity does not count as another flag
    kept = [line for line in lines if line.endswith(", kept")]
    trained = [line for line in lines if " -> " in line]
    assert len(kept) == 3 and trained == [
        f"[erm_shift] seed 2 -> {workdir / 'baselines' / 'erm_shift' / 'seed_2'}"
    ]
    after = _snapshot(workdir)
    for name in (
        "seed_1/model.keras",
        "seed_2/model.keras",
        "baselines/erm_shift/seed_1/model.keras",
    ):
        assert after[name] == before[name], name  # not retrained
    assert again["erm"] == results["erm"]  # reused as they were, in the aggregate too
    assert json.loads(after["metrics.json"]) == json.loads(before["metrics.json"])
    assert "| ERM + same perturbation |" in after["results.md"].decode()


def test_overwrite_retrains_its_own_runs_only(experiment_dir, tmp_path):
    config, _, before = experiment_dir
    workdir = tmp_path / "run"
    shutil.copytree(config.workdir, workdir)
    (workdir / "evaluations").mkdir()
    (workdir / "notes.txt").write_text("mine")
    # ERM on seed 2 again: its run and the summary are replaced, the other runs stay.
    _quiet(config.replace(workdir=str(workdir), seeds="2,3", baselines="", overwrite=True))
    after = _snapshot(workdir)
    assert after["notes.txt"] == b"mine" and not (workdir / "evaluations").exists()
    for name in ("seed_1/model.keras", "baselines/erm_shift/seed_2/model.keras"):
        assert after[name] == before[name], name
    assert "seed_3/model.keras" in after
    assert json.loads(after["metrics.json"])["seeds"] == [2, 3]
    assert "| ERM + same perturbation |" not in after["results.md"].decode()


def test_evaluate_scores_every_run_into_its_own_folder(experiment_dir, tmp_path):
    config, results, before = experiment_dir
    other_target = _source(tmp_path, seed=3)
    lines = []
    # Only --workdir and --target: everything else comes from the runs' config.json.
    again = experiment.run(
        Config(mode="evaluate", workdir=config.workdir, target=other_target),
        evaluate_only=True,
        log=lines.append,
    )
    assert [len(again[name]) for name in ("erm", "erm_shift")] == [2, 2]
    folder = os.path.join(config.workdir, "evaluations", target_slug(other_target))
    for run in ("seed_1", "seed_2", "baselines/erm_shift/seed_2"):
        with open(os.path.join(folder, run, "metrics.json")) as f:
            assert list(json.load(f)["test_by_target"]) == [other_target]
    with open(os.path.join(folder, "metrics.json")) as f:
        assert json.load(f)["seeds"] == [1, 2]
    assert "| ERM + same perturbation |" in open(os.path.join(folder, "results.md")).read()
    # On the training target itself: the training metrics again, in their own folder.
    same = _quiet(Config(mode="evaluate", workdir=config.workdir), evaluate_only=True)
    for name in ("erm", "erm_shift"):
        for seed_index in range(2):
            assert same[name][seed_index]["test"] == pytest.approx(
                results[name][seed_index]["test"], abs=1e-6
            )
    after = _snapshot(config.workdir)
    assert {k: v for k, v in after.items() if not k.startswith("evaluations")} == before
    assert os.path.isdir(os.path.join(config.workdir, "evaluations", target_slug(config.source)))


def test_cli_refuses_a_finished_workdir_with_exit_2(experiment_dir):
    config, _, _ = experiment_dir
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "train.py"),
            f"--source={config.source}",
            "--model=erm",
            "--seeds=1,2",
            f"--workdir={config.workdir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "--overwrite" in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
