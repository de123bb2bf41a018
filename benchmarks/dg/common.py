"""What the DG benchmarks share: run `train.py`, collect per-seed metrics, compare, report.

Every benchmark here drives the CLI a user runs (`python train.py --flagfile=... --flag=...`)
in a subprocess, then reads the workdir it wrote. Model selection happens inside
`train.py` on the source validation split only; the scripts only read the numbers.
"""

import glob
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(REPO, "benchmarks", "dg", "results")
MODEL_TITLES = {
    "midg": "MIDG",
    "erm": "ERM",
    "erm_shift": "ERM + same perturbation",
}


def git_commit_of(repo: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()


def run_train(args: list[str], log_path: str, repo: str = REPO) -> float:
    """Runs `python train.py ARGS` in `repo`; returns wall seconds. Fails loudly."""
    command = [sys.executable, "train.py", *args]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"train.py failed ({done.returncode}); see {log_path}")
    return time.perf_counter() - start


def model_dir(workdir: str, model: str, main_model: str) -> str:
    return workdir if model == main_model else os.path.join(workdir, "baselines", model)


def per_seed_metrics(run_dir: str) -> dict[int, dict]:
    """seed -> metrics.json of each `seed_<n>/` of a run (or {0: ...} for a single seed)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "seed_*", "metrics.json"))):
        seed = int(os.path.basename(os.path.dirname(path)).split("_", 1)[1])
        with open(path) as f:
            found[seed] = json.load(f)
    if not found and os.path.exists(os.path.join(run_dir, "metrics.json")):
        with open(os.path.join(run_dir, "metrics.json")) as f:
            found[0] = json.load(f)
    return found


def test_metrics(metrics: dict, target: str | None = None) -> dict:
    """The test metrics of one run for `target` (the first / only target when None)."""
    by_target = metrics.get("test_by_target")
    if target is not None and by_target:
        return by_target[target]
    return metrics["test"]


def mean_std(values):
    values = list(values)
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def paired(a: dict[int, float], b: dict[int, float]):
    """Per-seed differences a - b over the seeds both have, and the sign count."""
    seeds = sorted(set(a) & set(b))
    diffs = {seed: a[seed] - b[seed] for seed in seeds}
    wins = sum(d > 0 for d in diffs.values())
    losses = sum(d < 0 for d in diffs.values())
    return diffs, f"{wins}+ / {losses}- of {len(seeds)}"


def write_json(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    return path


def write_markdown(name: str, text: str) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.md")
    with open(path, "w") as f:
        f.write(text)
    return path


def plot_accuracy(name: str, title: str, groups: dict[str, dict[str, list[float]]]) -> str:
    """Target accuracy per model (mean, seed spread as dots), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for axis, (task, models) in zip(axes[0], groups.items()):
        names = list(models)
        for x, model in enumerate(names):
            values = [100 * v for v in models[model]]
            axis.bar(x, sum(values) / len(values), color=f"C{x}", alpha=0.6)
            axis.scatter([x] * len(values), values, color="black", s=12, zorder=3)
        axis.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        axis.set_title(task, fontsize=9)
        axis.set_ylabel("target Non0_acc_2 (%)")
        low = min(100 * min(v) for v in models.values())
        axis.set_ylim(max(0, low - 5), min(100, max(100 * max(v) for v in models.values()) + 3))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
