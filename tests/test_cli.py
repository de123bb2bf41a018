"""`train.py` as users run it: inspect accepts good files, bad input exits 2 in one line."""

import csv
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from tests.fake_mmsa import make_fake_mmsa, write_pickle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_inspect_accepts_every_real_layout(tmp_path):
    sources = []
    for layout, family in [
        ("mosi_unaligned", "mosi"),
        ("mosi_aligned", "mosi"),
        ("mosei_unaligned", "mosei"),
        ("sims_unaligned", "sims"),
        ("mmsa_fet", "mosi"),
    ]:
        path = tmp_path / f"{layout}.pkl"
        write_pickle(make_fake_mmsa(layout), str(path))
        sources.append(f"pickle:{path}@{family}")
    result = run_cli("--mode=inspect", "--source=" + ",".join(sources))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("source pickle:") == 5
    assert (
        "train" in result.stdout and "validation" in result.stdout and "-inf fixed" in result.stdout
    )


def _bad_files(tmp_path):
    truncated = tmp_path / "truncated.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned"), str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:200])
    nan_label = make_fake_mmsa("mosi_unaligned")
    nan_label["test"]["regression_labels"][2] = np.nan
    missing_key = make_fake_mmsa("mosi_unaligned")
    del missing_key["valid"]["vision"]
    sims_scale = make_fake_mmsa("mosi_unaligned")  # MOSI labels read as SIMS
    files = {"truncated": str(truncated)}
    for name, data in [("nan_label", nan_label), ("missing_key", missing_key)]:
        path = tmp_path / f"{name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f)
        files[name] = str(path)
    path = tmp_path / "mosi_as_sims.pkl"
    write_pickle(sims_scale, str(path))
    files["mosi_as_sims"] = str(path) + "@sims"
    return files


@pytest.mark.parametrize(
    "name, expected",
    [
        ("truncated", "truncated.pkl"),
        ("nan_label", "'test'"),
        ("missing_key", "'vision'"),
        ("mosi_as_sims", "@mosi"),
    ],
)
def test_inspect_rejects_bad_files_with_one_line(tmp_path, name, expected):
    result = run_cli("--mode=inspect", f"--source=pickle:{_bad_files(tmp_path)[name]}")
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_and_missing_flagfile_exit_2(tmp_path):
    result = run_cli("--mode=inspect", "--modalities=t,x")
    assert result.returncode == 2 and "--modalities" in result.stderr
    result = run_cli(f"--flagfile={tmp_path / 'nope.flags'}")
    assert result.returncode == 2 and "nope.flags" in result.stderr


# TensorFlow's start-up lines that train.py filters out (docs/design.md §7, §11).
STARTUP_NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cpu_feature_guard",
    "cuInit",
    "Could not find cuda drivers",
)


def test_helpshort_lists_our_flags_by_group():
    result = run_cli("--helpshort")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for group in ("run", "data", "model", "training", "output", "tuning"):
        assert f"midg_keras flags: {group}:" in out
    assert out.index("flags: data:") < out.index("--source") < out.index("flags: model:")
    assert out.index("flags: model:") < out.index("--hidden_dim") < out.index("flags: training:")
    assert "--batch_size" in out and "--export_dir" in out and "--search_space" in out
    # absl's own flags stay in --helpfull.
    assert "--verbosity" not in out and "--helpfull" in out
    assert not any(noise in result.stderr for noise in STARTUP_NOISE), result.stderr


def test_no_tensorflow_startup_lines_on_stderr(tmp_path):
    path = tmp_path / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned"), str(path))
    result = run_cli("--mode=inspect", f"--source=pickle:{path}@mosi")
    assert result.returncode == 0, result.stderr
    assert "source pickle:" in result.stdout
    assert not any(noise in result.stderr for noise in STARTUP_NOISE), result.stderr


def test_train_mode_from_the_command_line_writes_the_run(tmp_path):
    """`train.py --mode=train` as users run it: flags reach the run, outputs are written."""
    path = tmp_path / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(16, 8, 6)), str(path))
    workdir = tmp_path / "run"
    result = run_cli(
        "--mode=train", f"--source=pickle:{path}", "--modalities=t", "--hidden_dim=16",
        "--num_heads=2", "--num_experts=2", "--batch_size=8", "--epochs=2", "--patience=0",
        "--learning_rate=0.003", "--verbose=0", f"--workdir={workdir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.load(open(workdir / "config.json"))
    assert (saved["mode"], saved["hidden_dim"], saved["epochs"]) == ("train", 16, 2)
    assert saved["learning_rate"] == 0.003 and saved["modalities"] == "t"
    with open(workdir / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    metrics = json.load(open(workdir / "metrics.json"))
    assert np.isfinite(metrics["test"]["MAE"]) and np.isfinite(metrics["valid"]["MAE"])
    with open(workdir / "predictions" / "test.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    assert (workdir / "model.keras").exists() and (workdir / "results.md").exists()
