"""A whole experiment: every model (--model, --baselines) × every seed, then results.md.

Layout of `--workdir`: the main model's outputs at the top (in `seed_<n>/` when there are
several seeds), each baseline's in `baselines/<name>/`, and `results.md` with one row per
model and one column group per `--target` in the paper's table layout (mean ± std over
seeds). Each model is trained and selected once on the source; every target only scores it.
"""

import json
import os

from midg_keras import metrics as midg_metrics
from midg_keras.config import Config
from midg_keras.data.pipeline import open_sources, prepare_data
from midg_keras.training import distribute, report, runtime, trainer

MODEL_TITLES = {
    "midg": "MIDG",
    "erm": "ERM (late fusion)",
    "erm_shift": "ERM + same perturbation",
}


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

    Returns {model name: [per-seed {"valid": ..., "test": ..., "test_by_target": ...}]}.
    """
    results = {name: [] for name in config.model_list()}
    opened = open_sources(config)  # once: every seed batches the same arrays
    for seed in config.seed_list():
        seeded = config.replace(seed=seed)
        runtime.seed_everything(seeded)  # the pipeline's shuffle draws from the global seed too
        data = prepare_data(seeded, opened)
        for name in results:
            workdir = run_workdir(config, name, seed)
            log(f"[{name}] seed {seed} -> {workdir}")
            if evaluate_only:
                metrics = trainer.evaluate_workdir(seeded, data, workdir)
            else:
                metrics = trainer.train(seeded, data, workdir, model_name=name, strategy=strategy)
            for target in data.targets:
                scores = metrics["test_by_target"][target.name]
                log(f"[{name}] seed {seed} test {target.name}: {_headline(scores, target.family)}")
            results[name].append(metrics)
    # Under multiworker only the chief writes the shared workdir (distribute.worker_workdir).
    _write_summary(
        config, data, results, log, distribute.worker_workdir(config.workdir, config, strategy)
    )
    return results


def _headline(metrics, family):
    return ", ".join(f"{k} {v:.4f}" for k, v in midg_metrics.headline(metrics, family).items())


def _write_summary(config, data, results, log, workdir):
    seeds = config.seed_list()
    main = results[config.model]
    if len(seeds) > 1:
        summary = {"seeds": seeds}
        for split in ("valid", "test"):
            summary[split], summary[f"{split}_std"] = _mean_std([m[split] for m in main])
        summary["test_by_target"], summary["test_by_target_std"] = {}, {}
        for target in data.targets:
            mean, std = _mean_std([m["test_by_target"][target.name] for m in main])
            summary["test_by_target"][target.name] = mean
            summary["test_by_target_std"][target.name] = std
        with open(os.path.join(workdir, "metrics.json"), "w") as f:
            json.dump(summary, f, indent=2)
    rows = {
        MODEL_TITLES[name]: [m["test_by_target"] for m in runs] for name, runs in results.items()
    }
    families = {target.name: target.family for target in data.targets}
    table = report.targets_markdown(rows, families, source=config.source, seeds=seeds)
    sections = [table]
    for target in data.targets:
        full = report.results_markdown(
            {name: [m[target.name] for m in runs] for name, runs in rows.items()},
            target.family,
            source=config.source,
            target=target.name,
            seeds=seeds,
            full=True,
        )
        sections.append(
            f"All MMSA metrics ({target.name} test split):\n\n" + full.split("\n", 2)[2]
        )
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(sections))
    log(table)


def _mean_std(results):
    """({key: mean}, {key: std}) over per-seed metrics dicts."""
    aggregated = report.aggregate_seeds(results)
    return (
        {key: mean for key, (mean, _) in aggregated.items()},
        {key: std for key, (_, std) in aggregated.items()},
    )
