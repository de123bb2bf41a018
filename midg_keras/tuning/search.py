"""keras-tuner search over MIDG's hyper-parameters (docs/design.md §9): `run_search(config)`.

Each trial trains the configured model on the source training split with the flags of
`--search_space` set to the trial's values and scores it by the lowest source-validation
`prediction_loss` over its epochs (`OBJECTIVE`): the regression loss of the served
prediction, comparable across trials whatever their α, β, γ (the total loss is not). The
target test split is never read.

Everything lives in `--workdir`:

* `search/`: keras-tuner's project (oracle state, one folder per trial). The search is
  resumable: run the same command again and finished trials are kept; a trial cut short
  by a crash runs again from its start.
* `logs/<trial>/execution<n>/`: TensorBoard logs per trial, with the HParams dashboard.
* `search_space.json`: the space and flags the search was started with; a rerun with
  different ones is refused (use a fresh --workdir).
* `trials.csv`: one row per trial (status, objective, values).
* `best.flags`: every flag of the best trial, accepted as is by
  `python train.py --flagfile=<workdir>/best.flags` (trains into `<workdir>/best`).

A trial that raises stops the search with the trial's error (`TrialError`), rather than
being recorded as failed and skipped.
"""

import collections
import contextlib
import csv
import dataclasses
import json
import math
import os

import keras

from midg_keras.config import Config, ConfigError
from midg_keras.constants import SELECTION_METRIC
from midg_keras.data.errors import DataError
from midg_keras.data.pipeline import prepare_data
from midg_keras.data.sources import parse_sources
from midg_keras.training import distribute, runtime, trainer
from midg_keras.tuning.space import parse_search_space

OBJECTIVE = SELECTION_METRIC  # the model selection of a training run
PROJECT = "search"
BEST_FLAGFILE = "best.flags"
# Flags that change the tf.data pipeline: trials differing in them get their own data.
DATA_FIELDS = ("batch_size", "av_stride", "max_frames", "modalities")
# Not written to best.flags: the mode defaults to train, the search settings to none.
NOT_WRITTEN = frozenset(
    {"mode", "tuner", "max_trials", "executions_per_trial", "search_space", "workdir"}
)
# Flags holding input paths, made absolute in best.flags (it may be used from anywhere).
PATH_FIELDS = ("data_dir", "manual_dir", "label_csv")
SOURCE_FIELDS = ("source", "target")


class TrialError(RuntimeError):
    """A trial raised: the search stops with the trial's values and its error."""


def _fatal_trial_error():
    import keras_tuner

    class FatalTrialError(TrialError, keras_tuner.errors.FatalError):
        """Propagates through keras-tuner, which would otherwise log the error and go on."""

    return FatalTrialError


def check_dependencies(tuner: str):
    """keras-tuner imports these lazily: missing, every trial would fail (docs/design.md §11)."""
    needed = {"keras_tuner": "keras-tuner", "tensorboard.plugins.hparams.api": "tensorboard"}
    if tuner == "bayesian":
        needed.update({"scipy": "scipy", "sklearn": "scikit-learn"})
    missing = []
    for module, package in needed.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(
            f"--mode=tune --tuner={tuner} needs {', '.join(missing)}: "
            "pip install -r requirements.txt."
        )


class MIDGHyperModel:
    """Builds and fits one trial's model; wrapped into a `keras_tuner.HyperModel`.

    Args:
        config: the run's flags; the search space overrides some of them per trial.
        params: the parsed `--search_space`.
        strategy: `distribute.create_strategy(config)` (None without `--distribute`).
    """

    def __init__(self, config: Config, params, strategy=None):
        self.config = config
        self.params = params
        self.strategy = strategy
        self.searching = False  # keras-tuner builds once at construction to read the space
        self._data = {}
        self._builds = collections.Counter()

    def trial_config(self, hp) -> Config:
        values = {param.name: param.register(hp) for param in self.params}
        return self.config.replace(**values).validate()

    def data_for(self, config: Config):
        key = tuple(getattr(config, name) for name in DATA_FIELDS)
        if key not in self._data:
            self._data[key] = prepare_data(config)
        return self._data[key]

    def build(self, hp):
        config = self.trial_config(hp)
        if not self.searching:
            return None
        with _trial_errors(config, self.params):
            # Execution n of a given set of values is seeded with --seed + n, so a resumed
            # search retrains an interrupted trial exactly as it first started.
            key = json.dumps({p.name: getattr(config, p.name) for p in self.params}, sort_keys=True)
            execution = self._builds[key]
            self._builds[key] += 1
            runtime.seed_everything(config.replace(seed=config.seed + execution))
            return trainer.compiled_model(config, self.data_for(config), strategy=self.strategy)

    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        config = self.trial_config(hp)
        with _trial_errors(config, self.params):
            callbacks = list(callbacks)
            if config.patience:
                callbacks.append(
                    keras.callbacks.EarlyStopping(
                        monitor=OBJECTIVE, mode="min", patience=config.patience
                    )
                )
            return trainer.fit(model, config, self.data_for(config), callbacks, **kwargs)


@contextlib.contextmanager
def _trial_errors(config, params):
    """Turns any error of a trial into a `TrialError` that keras-tuner does not swallow."""
    try:
        yield
    except TrialError:
        raise
    except Exception as error:
        values = ", ".join(f"{p.name}={getattr(config, p.name)!r}" for p in params)
        raise _fatal_trial_error()(
            f"tuning trial with {values} failed: {type(error).__name__}: {error}"
        ) from error


def _hypermodel(config, params, strategy):
    import keras_tuner

    builder = MIDGHyperModel(config, params, strategy)

    class HyperModel(keras_tuner.HyperModel):
        def build(self, hp):
            return builder.build(hp)

        def fit(self, hp, model, *args, **kwargs):
            return builder.fit(hp, model, *args, **kwargs)

    return HyperModel(name="midg"), builder


def make_tuner(config: Config, hypermodel):
    """The keras-tuner tuner of `--tuner`, resuming the project in `--workdir` if any."""
    import keras_tuner

    common = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(OBJECTIVE, direction="min"),
        seed=config.seed,
        executions_per_trial=config.executions_per_trial,
        max_retries_per_trial=0,
        max_consecutive_failed_trials=1,
        directory=config.workdir,
        project_name=PROJECT,
        overwrite=False,
    )
    if config.tuner == "random":
        return keras_tuner.RandomSearch(max_trials=config.max_trials, **common)
    if config.tuner == "bayesian":
        return keras_tuner.BayesianOptimization(max_trials=config.max_trials, **common)
    # Hyperband's budget is its brackets over --epochs (max_epochs), not --max_trials.
    return keras_tuner.Hyperband(max_epochs=config.epochs, factor=3, **common)


def _check_same_search(config: Config, params):
    """Refuses to resume a search in `--workdir` that was started with other settings."""
    # --max_trials may grow on a rerun (more trials); where the search lives may move.
    settings = dataclasses.asdict(config.replace(max_trials=0, verbose=0, workdir=""))
    settings["search_space"] = [dataclasses.asdict(p) for p in params]
    settings = json.loads(json.dumps(settings))
    path = os.path.join(config.workdir, "search_space.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        keys = set(previous) | set(settings)
        changed = sorted(k for k in keys if previous.get(k) != settings.get(k))
        if changed:
            raise ConfigError(
                f"{config.workdir} holds a search started with other settings "
                f"({', '.join(changed)}): resume it with the same flags, or use another --workdir."
            )
        return
    os.makedirs(config.workdir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)


def run_search(config: Config, strategy=None) -> str:
    """Runs (or resumes) the search of `config`; returns the path of `best.flags`.

    `strategy` is `distribute.create_strategy(config)` (None without `--distribute`).

    Raises:
        ConfigError: bad --search_space, missing tuner dependencies, or a --workdir
            holding a search with other settings.
        DataError: the data cannot be used (raised by the trial that read it).
        TrialError: a trial failed; finished trials are kept for a rerun.
    """
    check_dependencies(config.tuner)
    distribute.check_strategy(config, strategy)
    params = parse_search_space(config.search_space, config)
    _check_same_search(config, params)
    hypermodel, builder = _hypermodel(config, params, strategy)
    tuner = make_tuner(config, hypermodel)
    builder.searching = True
    logs = os.path.join(config.workdir, "logs")
    tensorboard = keras.callbacks.TensorBoard(logs, write_graph=False)
    try:
        tuner.search(epochs=config.epochs, callbacks=[tensorboard], verbose=config.verbose)
    except TrialError as error:
        if isinstance(error.__cause__, (DataError, ConfigError)):
            raise error.__cause__ from None  # one clear line from the CLI
        raise
    trials = list(tuner.oracle.trials.values())
    write_trials_csv(os.path.join(config.workdir, "trials.csv"), trials, params)
    broken = [t for t in trials if t.status != "COMPLETED"]
    if broken:
        raise TrialError(
            f"trial {broken[0].trial_id} ended {broken[0].status}:\n{broken[0].message or ''}"
        )
    best_trial = tuner.oracle.get_best_trials(1)[0]
    best = builder.trial_config(best_trial.hyperparameters.copy())
    path = os.path.join(config.workdir, BEST_FLAGFILE)
    write_flagfile(
        path,
        best.replace(workdir=os.path.join(os.path.abspath(config.workdir), "best")),
        header=[
            f"Best of {len(trials)} trials of the {config.tuner} search in "
            f"{os.path.abspath(config.workdir)}:",
            f"trial {best_trial.trial_id}, source {OBJECTIVE} {best_trial.score:.6g} "
            "(the target test split was not used).",
            "Tuned: " + ", ".join(f"--{p.name}" for p in params) + ".",
            f"Train it: python train.py --flagfile={os.path.abspath(path)}",
        ],
    )
    return path


def write_trials_csv(path, trials, params):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial_id", "status", OBJECTIVE] + [p.name for p in params])
        for trial in sorted(trials, key=lambda t: t.trial_id):
            values = trial.hyperparameters.values
            score = "" if trial.score is None else repr(float(trial.score))
            writer.writerow(
                [trial.trial_id, trial.status, score] + [values.get(p.name, "") for p in params]
            )


def _absolute(path):
    if not path or "://" in path:
        return path
    return os.path.abspath(os.path.expanduser(path))


def _absolute_sources(flag, value):
    return ",".join(
        str(spec.with_path(_absolute(spec.path))) for spec in parse_sources(value, flag)
    )


def _absolute_folder_map(value):
    pairs = (item.strip().partition("=") for item in value.split(",") if item.strip())
    return ",".join(f"{name}{equals}{_absolute(folder)}" for name, equals, folder in pairs)


def _flag_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def write_flagfile(path, config: Config, header=()):
    """Writes every flag of `config` (but the search's own) as an absl flagfile.

    Input paths are made absolute, so the file works from any directory.
    """
    lines = [f"# {line}" for line in header]
    for field in dataclasses.fields(Config):
        if field.name in NOT_WRITTEN:
            continue
        value = getattr(config, field.name)
        if field.name in PATH_FIELDS:
            value = _absolute(value)
        elif field.name in SOURCE_FIELDS:
            value = _absolute_sources(field.name, value)
        elif field.name == "manual_dirs":
            value = _absolute_folder_map(value)
        lines.append(f"--{field.name}={_flag_text(value)}")
    lines.append(f"--workdir={config.workdir}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
