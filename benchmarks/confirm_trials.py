"""Retrains a search's best trials and an incumbent flagfile on other seeds, validation only.

One seed's best of many trials is partly luck. This script takes the top trials of a
keras-tuner search (`trials.csv` of a `--mode=tune` workdir), trains each with
`train.py --flagfile=<incumbent> --<searched flag>=<trial value>...` on new seeds, trains the
incumbent flagfile as it is on the same seeds, and ranks them by the mean over seeds of the
lowest validation prediction loss (the search's objective). Only validation numbers are read:
`train.py` also scores the test split, which this script never opens.

    python benchmarks/confirm_trials.py --trials_csv=runs/tune_mosi_text_study2/trials.csv \
        --incumbent=configs/mosi_text.flags --top=3 --seeds=1113,1114,1115 \
        --out=benchmarks/results/confirm_mosi_text_study2.md
"""

import argparse
import csv
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.dg import common as dg_common  # noqa: E402  (run train.py, read its runs)
from midg_keras.constants import SELECTION_METRIC as OBJECTIVE  # noqa: E402  (the search's)


def top_trials(trials_csv, top):
    """The `top` completed trials with the lowest objective: [(trial_id, score, {flag: value})]."""
    with open(trials_csv) as f:
        rows = [row for row in csv.DictReader(f) if row["status"] == "COMPLETED"]
    rows.sort(key=lambda row: float(row[OBJECTIVE]))
    fixed = {"trial_id", "status", OBJECTIVE}
    return [
        (row["trial_id"], float(row[OBJECTIVE]), {k: v for k, v in row.items() if k not in fixed})
        for row in rows[:top]
    ]


def best_validation_loss(run_dir, seed):
    """Lowest `val_prediction_loss` over the epochs of one seed's history.csv."""
    seed_dir = os.path.join(run_dir, f"seed_{seed}") if seed else run_dir
    with open(os.path.join(seed_dir, "history.csv")) as f:
        return min(float(row[OBJECTIVE]) for row in csv.DictReader(f))


def validation_row(name, run_dir):
    """One candidate's validation summary over its seeds."""
    valid = {seed: m["valid"] for seed, m in dg_common.per_seed_metrics(run_dir).items()}
    losses = {seed: best_validation_loss(run_dir, seed) for seed in valid}
    row = {"candidate": name, "seeds": sorted(losses)}
    row["loss_mean"], row["loss_std"] = dg_common.mean_std(list(losses.values()))
    for key in ("Non0_acc_2", "MAE", "Corr"):
        row[key] = dg_common.mean_std([valid[s][key] for s in losses])
    return row


def markdown(rows, args, trials):
    winner = min(rows, key=lambda row: row["loss_mean"])
    lines = [
        f"# Confirmation of the best trials of `{args.trials_csv}` (validation only)",
        "",
        f"Command: `python benchmarks/confirm_trials.py --trials_csv={args.trials_csv} "
        f"--incumbent={args.incumbent} --top={args.top} --seeds={args.seeds}`",
        "",
        f"Each candidate trained with `--flagfile={args.incumbent}` (a trial overriding its "
        f"searched flags) on seeds {args.seeds}; mean ± population std over the seeds of the "
        "lowest validation prediction loss and of the selected epoch's validation metrics. "
        "The test split is not read.",
        "",
        "| candidate | search objective | mean best val loss | val Non0_acc_2 | val MAE | val Corr |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    scores = {f"trial {trial_id}": score for trial_id, score, _ in trials}
    for row in rows:
        acc, mae, corr = row["Non0_acc_2"], row["MAE"], row["Corr"]
        score = scores.get(row["candidate"])
        lines.append(
            f"| {row['candidate']} | {'' if score is None else f'{score:.4f}'} | "
            f"{row['loss_mean']:.5f} ± {row['loss_std']:.5f} | "
            f"{100 * acc[0]:.2f} ± {100 * acc[1]:.2f} | {mae[0]:.4f} ± {mae[1]:.4f} | "
            f"{corr[0]:.3f} |"
        )
    lines += ["", f"Lowest mean best validation loss: **{winner['candidate']}**.", ""]
    for trial_id, _, values in trials:
        flags = " ".join(f"--{k}={v}" for k, v in values.items())
        lines.append(f"- trial {trial_id}: `{flags}`")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials_csv", required=True)
    parser.add_argument("--incumbent", required=True, help="flagfile the trials override")
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--seeds", default="1113,1114,1115")
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs", "confirm_trials"))
    parser.add_argument("--out", required=True, help="markdown file to write")
    args = parser.parse_args()

    trials = top_trials(args.trials_csv, args.top)
    candidates = [(f"trial {tid}", values) for tid, _, values in trials]
    candidates.append((f"incumbent `{args.incumbent}`", {}))
    rows = []
    for index, (name, values) in enumerate(candidates):
        run_dir = os.path.join(args.workdir, f"candidate_{index}")
        os.makedirs(run_dir, exist_ok=True)
        train_args = [
            f"--flagfile={args.incumbent}",
            f"--seeds={args.seeds}",
            "--baselines=",
            f"--workdir={run_dir}",
            "--verbose=0",
            "--overwrite",
            *(f"--{k}={v}" for k, v in values.items()),
        ]
        dg_common.run_train(train_args, os.path.join(run_dir, "train.log"), REPO)
        rows.append(validation_row(name, run_dir))
        print(rows[-1], flush=True)
    text = markdown(rows, args, trials)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
