"""In-domain quality on real text: ours vs MMSA's MulT vs a ridge, on the same features.

The features are `benchmarks/dg/real_text_features.py`'s MiniLM-L6 token features of the
real CMU-MOSI / CMU-MOSEI transcripts (MMSA's splits). For each dataset, three sides:

- ours: `python train.py --flagfile=configs/<dataset>_text.flags --source=pickle:<file>`
  (MIDG and the ERM baseline, 5 seeds, text only, selection on the validation split);
- MulT: MMSA 2.2.1's MulT through `benchmarks/peer_mmsa.py --sides=mult`, once per seed,
  MMSA's own selection (lowest validation loss) and its `do_test`;
- ridge: ridge regression on the masked mean of the token features, its L2 strength chosen
  on the validation split's MAE.

    python benchmarks/in_domain_text.py --datasets=mosi
    python benchmarks/in_domain_text.py --datasets=mosei --sides=ridge,ours
    python benchmarks/in_domain_text.py --datasets=mosei --sides=mult --mult_seeds=1111,1112

Sides not run are read from the dataset's previous JSON, so a slow side can run alone; MulT
seeds run later with the same command are added to the recorded ones.
Writes benchmarks/results/in_domain_text_<dataset>.{json,md}.
"""

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.dg import common as dg_common  # noqa: E402  (run train.py, read its runs)
from midg_keras import metrics as midg_metrics  # noqa: E402

RESULTS = os.path.join(REPO, "benchmarks", "results")
KEYS = ("Non0_acc_2", "Non0_F1_score", "Has0_acc_2", "Mult_acc_7", "MAE", "Corr")
RIDGE_STRENGTHS = tuple(10.0**k for k in np.arange(-2.0, 4.01, 0.5))
SIDES = {
    "midg": "MIDG (ours, text only)",
    "erm": "ERM late fusion (ours, text only)",
    "mult": "MMSA 2.2.1 MulT",
    "ridge": "Ridge on mean-pooled features",
}


def feature_file(features_dir, dataset):
    return os.path.join(features_dir, f"{dataset}_minilm_l6_50.pkl")


def pooled_split(data, split):
    """(masked mean of the token features, labels) of one split of an MMSA-layout dict."""
    tokens = np.asarray(data[split]["text"], np.float64)
    mask = np.asarray(data[split]["text_bert"], np.float64)[:, 1, :]  # attention mask
    pooled = (tokens * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
    return pooled, np.asarray(data[split]["regression_labels"], np.float64)


def ridge_side(path, dataset):
    """Closed-form ridge (intercept unpenalized) on standardized pooled features."""
    with open(path, "rb") as f:
        data = pickle.load(f)  # our own feature file
    x, y = pooled_split(data, "train")
    mean, std = x.mean(0), x.std(0) + 1e-8
    evaluate = midg_metrics.metrics_for_family(dataset)

    def standardized(split):
        features, labels = pooled_split(data, split)
        return (features - mean) / std, labels

    x = (x - mean) / std
    gram, moment = x.T @ x, x.T @ (y - y.mean())
    valid_x, valid_y = standardized("valid")
    search = []
    for strength in RIDGE_STRENGTHS:
        weights = np.linalg.solve(gram + strength * np.eye(len(gram)), moment)
        mae = float(np.abs(valid_x @ weights + y.mean() - valid_y).mean())
        search.append((mae, strength, weights))
    mae, strength, weights = min(search, key=lambda item: item[0])
    test_x, test_y = standardized("test")
    scores = evaluate((test_x @ weights + y.mean()).astype("float32"), test_y.astype("float32"))
    return {
        "per_seed": {"0": {k: float(scores[k]) for k in KEYS}},
        "selection": f"L2 strength {strength:g} of {len(RIDGE_STRENGTHS)} (log grid "
        f"1e-2..1e4), lowest validation MAE {mae:.4f}",
    }


def ours_side(path, dataset, workdir, flagfile):
    """Runs `train.py` with the dataset's flagfile; per-seed test metrics of MIDG and ERM."""
    args = [
        f"--flagfile={flagfile}",
        f"--source=pickle:{path}@{dataset}",
        f"--workdir={workdir}",
        "--verbose=0",
        "--overwrite",
    ]
    os.makedirs(workdir, exist_ok=True)
    seconds = dg_common.run_train(args, os.path.join(workdir, "train.log"), REPO)
    sides = {}
    for model in ("midg", "erm"):
        runs = dg_common.per_seed_metrics(dg_common.model_dir(workdir, model, "midg"))
        if not runs:  # the flagfile trains no ERM baseline
            continue
        per_seed = {}
        for seed, metrics in runs.items():
            per_seed[str(seed)] = {k: metrics["test"][k] for k in KEYS}
            per_seed[str(seed)]["valid_Non0_acc_2"] = metrics["valid"]["Non0_acc_2"]
            per_seed[str(seed)]["valid_MAE"] = metrics["valid"]["MAE"]
        sides[model] = {
            "per_seed": per_seed,
            "selection": "lowest validation prediction loss over the epochs (train.py)",
            "command": " ".join(["python", "train.py", *args]),
            "seconds": round(seconds, 1),
        }
    return sides


def mult_side(path, dataset, seeds, epochs, threads, commit):
    """MulT once per seed through peer_mmsa.py; per-seed test metrics, speed and memory."""
    per_seed, speed = {}, {}
    for seed in seeds:
        with tempfile.TemporaryDirectory(prefix="midg_in_domain_mult_") as results:
            command = [
                sys.executable,
                os.path.join("benchmarks", "peer_mmsa.py"),
                f"--pickle={path}",
                f"--dataset={dataset}",
                "--sides=mult",
                f"--epochs={epochs}",
                f"--seed={seed}",
                f"--threads={threads}",
                f"--results={results}",
            ]
            print("$ " + " ".join(command), flush=True)
            subprocess.run(command, cwd=REPO, check=True)
            with open(os.path.join(results, "peer_mmsa.jsonl")) as f:
                row = json.loads(f.readlines()[-1])["rows"][0]
        per_seed[str(seed)] = {k: row["test"][k] for k in KEYS}
        speed[str(seed)] = {
            "epochs": row["epochs"],
            "samples_per_second": row["samples_per_second"],
            "peak_rss_mib": row["peak_rss_mib"],
            "commit": commit,
        }
    return {
        "per_seed": per_seed,
        "speed": speed,
        "threads": threads,
        "selection": f"MMSA's: lowest validation loss, at most {epochs} epochs "
        "(its early stopping may end sooner)",
        "command": "python benchmarks/peer_mmsa.py --pickle=<file> "
        f"--dataset={dataset} --sides=mult --epochs={epochs} --seed=<seed>",
    }


def summary(side):
    """{key: (mean, population std)} over the side's seeds."""
    rows = list(side["per_seed"].values())
    return {key: dg_common.mean_std(r[key] for r in rows) for key in KEYS}


def markdown(dataset, payload):
    lines = [
        f"# In-domain {dataset.upper()}, text only: ours vs MulT vs ridge (same features)",
        "",
        "Features: MiniLM-L6 token features of the real transcripts "
        "(`benchmarks/dg/real_text_features.py`), MMSA's splits. Test split, mean ± population "
        "std over seeds (n = seeds). Every side selects on the validation split only.",
        "",
        "| side | n | " + " | ".join(KEYS) + " |",
        "|---|---:|" + "---:|" * len(KEYS),
    ]
    for name, title in SIDES.items():
        side = payload["sides"].get(name)
        if not side:
            continue
        cells = []
        for key, (mean, std) in summary(side).items():
            scale = 1 if key in ("MAE", "Corr") else 100
            cells.append(
                f"{mean * scale:.2f} ± {std * scale:.2f}"
                if scale == 100
                else f"{mean:.4f} ± {std:.4f}"
            )
        lines.append(f"| {title} | {len(side['per_seed'])} | " + " | ".join(cells) + " |")
    lines += ["", "Selection and commands:", ""]
    for name, title in SIDES.items():
        side = payload["sides"].get(name)
        if side:
            extra = f"; `{side['command']}`" if side.get("command") else ""
            lines.append(f"- {title}: {side['selection']}{extra}")
    mult = payload["sides"].get("mult")
    if mult and mult.get("speed"):
        rates = [s["samples_per_second"] for s in mult["speed"].values()]
        rss = [s["peak_rss_mib"] for s in mult["speed"].values()]
        lines.append(
            f"- MulT training speed {statistics.fmean(rates):.1f} samples/s, peak RSS "
            f"{max(rss):.0f} MiB ({mult.get('threads', 2)} CPU thread(s))."
        )
        commits = {}
        for seed, entry in sorted(mult["speed"].items()):
            commits.setdefault(entry.get("commit", "?"), []).append(seed)
        runs = "; ".join(f"seeds {', '.join(seeds)} at {c}" for c, seeds in commits.items())
        lines.append(f"- MulT runs: {runs}.")
    lines.append(f"\nCode: commit {payload['commit']}.")
    return "\n".join(lines) + "\n"


def _add_mult_seeds(payload, computed):
    """MulT seeds run later with the same command join the recorded ones (16-36 min a seed on
    MOSEI); each seed keeps the commit it ran at."""
    new, recorded = computed.get("mult"), payload["sides"].get("mult")
    if not new or not recorded or recorded["command"] != new["command"]:
        return
    for entry in recorded["speed"].values():
        entry.setdefault("commit", payload.get("commit", "?"))
    new["per_seed"] = {**recorded["per_seed"], **new["per_seed"]}
    new["speed"] = {**recorded["speed"], **new["speed"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features_dir", default="/tmp/real_text")
    parser.add_argument("--datasets", default="mosi,mosei")
    parser.add_argument("--sides", default="ridge,ours,mult")
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "in_domain_text"))
    parser.add_argument("--mult_seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--mult_epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sides = {s.strip() for s in args.sides.split(",") if s.strip()}
    commit = dg_common.git_commit_of(REPO)
    for dataset in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        path = feature_file(args.features_dir, dataset)
        json_path = os.path.join(RESULTS, f"in_domain_text_{dataset}.json")
        computed = {}
        if "ridge" in sides:
            computed["ridge"] = ridge_side(path, dataset)
        if "ours" in sides:
            flagfile = os.path.join("configs", f"{dataset}_text.flags")
            workdir = os.path.join(args.workdir, dataset)
            computed.update(ours_side(path, dataset, workdir, flagfile))
        if "mult" in sides:
            seeds = [int(s) for s in args.mult_seeds.split(",") if s.strip()]
            computed["mult"] = mult_side(
                path, dataset, seeds, args.mult_epochs, args.threads, commit
            )
        # Read at the end: another side may have been written meanwhile by another run.
        payload = {"sides": {}}
        if os.path.exists(json_path):
            with open(json_path) as f:
                payload = json.load(f)
        _add_mult_seeds(payload, computed)
        payload["sides"].update(computed)
        payload["commit"] = commit
        os.makedirs(RESULTS, exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
        text = markdown(dataset, payload)
        with open(os.path.join(RESULTS, f"in_domain_text_{dataset}.md"), "w") as f:
            f.write(text)
        print(text)


if __name__ == "__main__":
    main()
