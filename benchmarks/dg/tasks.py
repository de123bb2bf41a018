"""One DG comparison: MIDG vs ERM vs ERM + the same perturbation, seeds, several targets.

A task trains each model once per seed on its source (selection on the source validation
split, inside `train.py`) and scores it once on every target; this module runs the task
through the CLI and writes its table (the paper's Table 1 layout: one column group per
target), the paired per-seed differences with a sign count, JSON and a PNG.
"""

import dataclasses
import os

import common

MODELS = ("midg", "erm", "erm_shift")
METRICS = (
    ("Non0_acc_2", "ACC", 100),
    ("Non0_F1_score", "F1", 100),
    ("MAE", "MAE", 1),
    ("Corr", "Corr", 1),
)


@dataclasses.dataclass
class Task:
    """A source, its unseen targets and the flags of the run (a flagfile plus overrides)."""

    name: str
    flags: list[str]
    targets: list[str]
    seeds: str = "1111,1112,1113,1114,1115"


def run_task(task: Task, workdir_root: str, models=MODELS) -> dict:
    """Trains `models` on every seed; returns per-model, per-target metrics of all three.

    A model not in `models` is read from the workdir of an earlier run of the same task
    (e.g. after a change that concerns MIDG only, the baselines need no rerun); with no
    models at all, the report is rebuilt from the workdir.
    """
    workdir = os.path.join(workdir_root, task.name)
    os.makedirs(workdir, exist_ok=True)
    args = [
        *task.flags,
        f"--model={models[0] if models else 'midg'}",
        f"--baselines={','.join(models[1:])}",
        f"--target={','.join(task.targets)}",
        f"--seeds={task.seeds}",
        f"--workdir={workdir}",
        "--verbose=0",
        "--overwrite",  # the models it (re)trains; the others are kept
    ]
    # No model to train: only (re)write the report of runs already in the workdir.
    seconds = common.run_train(args, os.path.join(workdir, "train.log")) if models else 0.0
    results = {"task": task.name, "flags": args, "seconds": seconds, "models": {}}
    for model in MODELS:
        per_seed = common.per_seed_metrics(common.model_dir(workdir, model, "midg"))
        results["models"][model] = {
            target: {
                key: {seed: common.test_metrics(m, target)[key] for seed, m in per_seed.items()}
                for key, _, _ in METRICS
            }
            for target in task.targets
        }
        results["models"][model]["valid_MAE"] = {s: m["valid"]["MAE"] for s, m in per_seed.items()}
    return results


def add_run_arguments(parser):
    """The flags every task script shares: seeds, workdir root, which models to (re)train."""
    parser.add_argument("--seeds", default="1111,1112,1113,1114,1115")
    parser.add_argument("--workdir", default="/tmp/midg_dg")
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help="models to (re)train; the others are read from an earlier run in --workdir "
        "(empty: only rebuild the report)",
    )


def models_to_train(args) -> tuple:
    return tuple(m for m in args.models.split(",") if m)


def _cell(values, scale):
    mean, std = common.mean_std(values)
    return f"{scale * mean:.2f} ± {scale * std:.2f}" if scale == 100 else f"{mean:.4f} ± {std:.4f}"


def task_markdown(results: dict, target_titles: dict[str, str]) -> str:
    """The Table-1-layout table of one task plus its paired comparisons."""
    targets = list(target_titles)
    head = "| Model | " + " | ".join(
        f"{target_titles[t]} {label}" for t in targets for _, label, _ in METRICS
    )
    lines = [head + " |", "|---|" + "---:|" * (len(targets) * len(METRICS))]
    for model in MODELS:
        runs = results["models"][model]
        cells = [_cell(runs[t][key].values(), scale) for t in targets for key, _, scale in METRICS]
        lines.append(f"| {common.MODEL_TITLES[model]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Paired per-seed differences of target ACC (Non0_acc_2, points), MIDG minus baseline:",
        "",
    ]
    lines += ["| target | vs | per seed | mean | sign count |", "|---|---|---|---:|---|"]
    for target in targets:
        midg = results["models"]["midg"][target]["Non0_acc_2"]
        for baseline in ("erm", "erm_shift"):
            diffs, signs = common.paired(midg, results["models"][baseline][target]["Non0_acc_2"])
            per_seed = " ".join(f"{100 * d:+.1f}" for d in diffs.values())
            mean = 100 * sum(diffs.values()) / len(diffs)
            lines.append(
                f"| {target_titles[target]} | {common.MODEL_TITLES[baseline]} | {per_seed} | "
                f"{mean:+.2f} | {signs} |"
            )
    return "\n".join(lines) + "\n"


def accuracy_groups(results: dict, target_titles: dict[str, str]) -> dict:
    """{panel title: {model title: per-seed target ACC}} for `common.plot_accuracy`."""
    return {
        f"{results['task']}: {title}": {
            common.MODEL_TITLES[m]: list(results["models"][m][target]["Non0_acc_2"].values())
            for m in MODELS
        }
        for target, title in target_titles.items()
    }
