"""A whole experiment: every model (--model, --baselines) × every seed, then results.md.

Layout of `--workdir`: the main model's outputs at the top (in `seed_<n>/` when there are
several seeds), each baseline's in `baselines/<name>/`, and `results.md` with one row per
model in the paper's table layout (mean ± std over seeds).
"""

import json
import os

from midg_keras import metrics as midg_metrics
from midg_keras.config import Config
from midg_keras.data.pipeline import prepare_data
from midg_keras.training import report, runtime, trainer

MODEL_TITLES = {"midg": "MIDG", "erm": "ERM (late fusion)"}


def run_workdir(config: Config, model_name: str, seed: int) -> str:
    base = config.workdir
    if model_name != config.model:
        base = os.path.join(base, "baselines", model_name)
    if len(config.seed_list()) > 1:
        base = os.path.join(base, f"seed_{seed}")
    return base


def run(config: Config, strategy=None, evaluate_only=False, log=print) -> dict:
    """Trains (or, with `evaluate_only`, re-scores) every model and seed; writes results.md.

    `strategy` is `distribute.create_strategy(config)` (None without `--distribute`).

    Returns {model name: [per-seed {"valid": ..., "test": ...}]}.
    """
    results = {name: [] for name in config.model_list()}
    data = None
    for seed in config.seed_list():
        seeded = config.replace(seed=seed)
        runtime.seed_everything(seeded)  # the pipeline's shuffle draws from the global seed too
        data = prepare_data(seeded)
        for name in results:
            workdir = run_workdir(config, name, seed)
            log(f"[{name}] seed {seed} -> {workdir}")
            if evaluate_only:
                metrics = trainer.evaluate_workdir(seeded, data, workdir)
            else:
                metrics = trainer.train(seeded, data, workdir, model_name=name, strategy=strategy)
            log(f"[{name}] seed {seed} test: " + _headline(metrics["test"], data.target.family))
            results[name].append(metrics)
    _write_summary(config, data, results, log)
    return results


def _headline(metrics, family):
    return ", ".join(f"{k} {v:.4f}" for k, v in midg_metrics.headline(metrics, family).items())


def _write_summary(config, data, results, log):
    seeds = config.seed_list()
    main = results[config.model]
    if len(seeds) > 1:
        summary = {"seeds": seeds}
        for split in ("valid", "test"):
            aggregated = report.aggregate_seeds([m[split] for m in main])
            summary[split] = {k: mean for k, (mean, _) in aggregated.items()}
            summary[f"{split}_std"] = {k: std for k, (_, std) in aggregated.items()}
        with open(os.path.join(config.workdir, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
    rows = {MODEL_TITLES[name]: [m["test"] for m in runs] for name, runs in results.items()}
    kwargs = dict(source=config.source, target=config.target, seeds=seeds)
    table = report.results_markdown(rows, data.target.family, **kwargs)
    full = report.results_markdown(rows, data.target.family, full=True, **kwargs)
    with open(os.path.join(config.workdir, "results.md"), "w") as f:
        f.write(table + "\nAll MMSA metrics (target test split):\n\n" + full.split("\n", 2)[2])
    log(table)
