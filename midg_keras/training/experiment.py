"""A whole experiment: every model (--model, --baselines) × every seed, then results.md.

Layout of `--workdir`: the main model's outputs at the top (in `seed_<n>/` when there are
several seeds), each baseline's in `baselines/<name>/`, and `results.md` with one row per
model and one column group per `--target` in the paper's table layout (mean ± std over
seeds). Each model is trained and selected once on the source; every target only scores it.

Restarts (docs/design.md §8): one process at a time holds the workdir
(`workdir.workdir_lock`). A finished experiment (`results.md`) is never trained over
without `--overwrite`. In an unfinished one every run must have been started with the
same flags (`workdir.differing_flags`); runs with a `metrics.json` are kept and their
metrics reused, an interrupted run resumes from its backup, the rest are trained.
`--mode=evaluate` scores the finished runs again into `evaluations/<target>/`, never over
the training outputs.
"""

import contextlib
import glob
import json
import os

import keras

from midg_keras import metrics as midg_metrics
from midg_keras.config import Config
from midg_keras.constants import MODEL_FILE
from midg_keras.data.pipeline import open_sources, prepare_data, target_slug
from midg_keras.training import distribute, report, runtime, trainer
from midg_keras.training.workdir import (
    WorkdirError,
    atomic_write,
    clear_outputs,
    differing_flags,
    workdir_lock,
)

MODEL_TITLES = {
    "midg": "MIDG",
    "erm": "ERM (late fusion)",
    "erm_shift": "ERM + same perturbation",
}
RESULTS_FILE = "results.md"
EVALUATIONS_DIR = "evaluations"
# Flags `--mode=evaluate` takes from the command line when set (not at their default):
# what to score and where its data lies. Every other flag comes from the run's config.json.
EVALUATION_FLAGS = ("target", "harmonize", "nan_to_num", "data_dir", "manual_dir", "manual_dirs")


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
    if evaluate_only:
        return evaluate(config, log)
    # Under multiworker only the chief writes the shared workdir (distribute.worker_workdir):
    # it alone locks and clears it; every worker makes the same choice of runs to train.
    chief = distribute.is_chief(config, strategy)
    with workdir_lock(config.workdir) if chief else contextlib.nullcontext():
        if config.overwrite and chief:
            _clear_runs(config)
        finished = {} if config.overwrite else _finished_runs(config)
        results = {name: [] for name in config.model_list()}
        opened = None  # opened once, by the first seed with a run to train
        for seed in config.seed_list():
            seeded = config.replace(seed=seed)
            data = None
            if any((name, seed) not in finished for name in results):
                runtime.seed_everything(seeded)  # the pipeline's shuffle draws from it too
                opened = opened or open_sources(config)
                data = prepare_data(seeded, opened)
            for name in results:
                workdir = run_workdir(config, name, seed)
                if (name, seed) in finished:
                    log(f"[{name}] seed {seed}: finished in {workdir}, kept")
                    results[name].append(finished[(name, seed)])
                    continue
                log(f"[{name}] seed {seed} -> {workdir}")
                metrics = trainer.train(seeded, data, workdir, model_name=name, strategy=strategy)
                _log_scores(name, seed, data, metrics, log)
                results[name].append(metrics)
        if data is not None:
            families = {target.name: target.family for target in data.targets}
        else:
            last_seed = config.seed_list()[-1]
            families = _recorded_families(
                run_workdir(config, config.model, last_seed), results[config.model][-1]
            )
        summary_dir = distribute.worker_workdir(config.workdir, config, strategy)
        _write_summary(summary_dir, config.source, config.seed_list(), families, results, log)
    return results


def _clear_runs(config: Config):
    """`--overwrite`: deletes the outputs of this command's runs and the experiment summary.

    Runs of other models or seeds in the workdir stay (benchmarks/dg retrains MIDG beside
    the baselines of an earlier run this way).
    """
    for seed in config.seed_list():
        for name in config.model_list():
            clear_outputs(run_workdir(config, name, seed))
    clear_outputs(config.workdir, (RESULTS_FILE, trainer.METRICS_FILE, EVALUATIONS_DIR))


def _finished_runs(config: Config) -> dict:
    """{(model, seed): metrics} of the runs already finished in the workdir, to keep.

    Refuses a finished experiment, and any run started with other flags.
    """
    if os.path.exists(os.path.join(config.workdir, RESULTS_FILE)):
        raise WorkdirError(
            f"{config.workdir} holds a finished run ({RESULTS_FILE}): choose a new --workdir, "
            "or pass --overwrite to replace it."
        )
    finished = {}
    for seed in config.seed_list():
        for name in config.model_list():
            run_dir = run_workdir(config, name, seed)
            config_path = os.path.join(run_dir, "config.json")
            if not os.path.exists(config_path):
                continue
            with open(config_path) as f:
                differing = differing_flags(f.read(), config.replace(seed=seed, model=name))
            if differing:
                raise WorkdirError(
                    f"{run_dir} holds a run started with other flags: {', '.join(differing)}; "
                    "rerun with its flags to resume it, choose a new --workdir, or pass "
                    "--overwrite."
                )
            metrics_path = os.path.join(run_dir, trainer.METRICS_FILE)
            if os.path.exists(metrics_path):
                with open(metrics_path) as f:
                    finished[(name, seed)] = json.load(f)
    return finished


def _recorded_families(run_dir, metrics) -> dict:
    """{target name: label family} in --target order, as a finished run recorded them."""
    with open(os.path.join(run_dir, "config.json")) as f:
        recorded = json.load(f)["data_sources"]["targets"]
    return {name: entry["label_family"] for name, entry in zip(metrics["test_by_target"], recorded)}


def evaluate(config: Config, log=print) -> dict:
    """Scores every finished run of `config.workdir` again; writes under `evaluations/`.

    The model, data and seeds come from the runs' own `config.json`, as for export; of the
    command line only the `EVALUATION_FLAGS` set on it count (`--target`: score another
    target). Results go to `<workdir>/evaluations/<target>/` in the training layout
    (`seed_<n>/`, `baselines/<name>/`, `results.md`); seeds whose runs are not all finished
    are skipped. Returns what `run` returns, for the seeds evaluated.
    """
    trained = _trained_config(config)
    scored = trained.target or trained.source.split(",")[0]
    folder = os.path.join(config.workdir, EVALUATIONS_DIR, target_slug(scored))
    with workdir_lock(config.workdir):
        results = {name: [] for name in trained.model_list()}
        seeds, data, opened = [], None, None
        for seed in trained.seed_list():
            run_dirs = {name: run_workdir(trained, name, seed) for name in results}
            unfinished = [path for path in run_dirs.values() if not _is_finished(path)]
            if unfinished:
                log(f"seed {seed}: {', '.join(unfinished)} not finished, skipped")
                continue
            seeded = trained.replace(seed=seed)
            runtime.seed_everything(seeded)
            opened = opened or open_sources(trained)
            data = prepare_data(seeded, opened)
            for name, run_dir in run_dirs.items():
                output = run_workdir(trained.replace(workdir=folder), name, seed)
                log(f"[{name}] seed {seed}: {run_dir} -> {output}")
                model = keras.saving.load_model(os.path.join(run_dir, MODEL_FILE))
                metrics = trainer.evaluate(model, data, output)
                _log_scores(name, seed, data, metrics, log)
                results[name].append(metrics)
            seeds.append(seed)
        if not seeds:
            raise FileNotFoundError(
                f"no finished training run in {config.workdir}: finish it first "
                f"(--mode=train --workdir={config.workdir})."
            )
        families = {target.name: target.family for target in data.targets}
        _write_summary(folder, trained.source, seeds, families, results, log)
    return results


def _trained_config(config: Config) -> Config:
    """The experiment's flags, from its first run's `config.json` and `EVALUATION_FLAGS`."""
    candidates = [os.path.join(config.workdir, "config.json")] + sorted(
        glob.glob(os.path.join(config.workdir, "seed_*", "config.json"))
    )
    existing = [path for path in candidates if os.path.exists(path)]
    if not existing:
        raise FileNotFoundError(
            f"no training run in {config.workdir} (no config.json, nor seed_<n>/config.json): "
            f"train first (--mode=train --workdir={config.workdir})."
        )
    with open(existing[0]) as f:
        trained = Config.from_json(f.read())
    defaults = Config()
    given = {
        name: getattr(config, name)
        for name in EVALUATION_FLAGS
        if getattr(config, name) != getattr(defaults, name)
    }
    return trained.replace(
        mode="evaluate", workdir=config.workdir, verbose=config.verbose, **given
    ).validate()


def _is_finished(run_dir):
    return all(
        os.path.exists(os.path.join(run_dir, name)) for name in (trainer.METRICS_FILE, MODEL_FILE)
    )


def _log_scores(name, seed, data, metrics, log):
    for target in data.targets:
        scores = metrics["test_by_target"][target.name]
        log(f"[{name}] seed {seed} test {target.name}: {_headline(scores, target.family)}")


def _headline(metrics, family):
    return ", ".join(f"{k} {v:.4f}" for k, v in midg_metrics.headline(metrics, family).items())


def _write_summary(folder, source, seeds, families, results, log):
    """results.md (and, with several seeds, the mean/std `metrics.json`) in `folder`.

    `families` is {target name: label family}, in --target order.
    """
    main = next(iter(results.values()))
    if len(seeds) > 1:
        summary = {"seeds": seeds}
        for split in ("valid", "test"):
            summary[split], summary[f"{split}_std"] = _mean_std([m[split] for m in main])
        summary["test_by_target"], summary["test_by_target_std"] = {}, {}
        for target in families:
            mean, std = _mean_std([m["test_by_target"][target] for m in main])
            summary["test_by_target"][target] = mean
            summary["test_by_target_std"][target] = std
        atomic_write(os.path.join(folder, trainer.METRICS_FILE), json.dumps(summary, indent=2))
    rows = {
        MODEL_TITLES[name]: [m["test_by_target"] for m in runs] for name, runs in results.items()
    }
    table = report.targets_markdown(rows, families, source=source, seeds=seeds)
    sections = [table]
    for target, family in families.items():
        full = report.results_markdown(
            {name: [m[target] for m in runs] for name, runs in rows.items()},
            family,
            source=source,
            target=target,
            seeds=seeds,
            full=True,
        )
        sections.append(f"All MMSA metrics ({target} test split):\n\n" + full.split("\n", 2)[2])
    atomic_write(os.path.join(folder, RESULTS_FILE), "\n".join(sections))
    log(table)


def _mean_std(results):
    """({key: mean}, {key: std}) over per-seed metrics dicts."""
    aggregated = report.aggregate_seeds(results)
    return (
        {key: mean for key, (mean, _) in aggregated.items()},
        {key: std for key, (_, std) in aggregated.items()},
    )
