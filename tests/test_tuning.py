"""`--mode=tune` (docs/design.md §9): search space syntax, resumable search, best flagfile.

One real search trains a tiny MIDG: a subprocess starts a 2-trial random search and is
killed (SIGKILL) as the 2nd trial starts training; run again on the same workdir it keeps
trial 0 and runs trial 1 again. Both processes search with every test split unreadable (a
trial that read one would fail), and each trial's recorded objective is checked against its
best checkpoint's source-validation `prediction_loss`. The other tuners and the failure paths run keras-tuner for
real around a stand-in fit that only scores the trial's values (no training).
"""

import csv
import dataclasses
import glob
import os
import signal
import subprocess
import sys

import keras
import pytest
from absl import flags

from midg_keras import flags as midg_flags
from midg_keras import keras_compat
from midg_keras.config import Config, ConfigError
from midg_keras.data.errors import DataError
from midg_keras.data.pipeline import prepare_data
from midg_keras.flagfile import expand_flagfiles
from midg_keras.training import trainer
from midg_keras.tuning import (
    OBJECTIVE,
    TrialError,
    parse_search_space,
    run_search,
    search,
    write_flagfile,
)
from tests.fake_mmsa import make_fake_mmsa, write_pickle

# keras-tuner 1.4.8 calls threading.currentThread().getName() (deprecated) on every trial.
pytestmark = [
    pytest.mark.filterwarnings("ignore:currentThread:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:getName:DeprecationWarning"),
]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = "checkpoint.weights.h5"  # keras-tuner's best-epoch weights of a trial
SPACE = (
    "num_experts=choice:2|3; alpha=float:0.5:2; learning_rate=float:1e-4:1e-2:log; "
    "use_moie=choice:true|false"
)

# argv: workdir, source, kill_trial. Kills itself as that trial's fit starts.
WORKER = r"""
import os, signal, sys
import tensorflow as tf

tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})  # quicker
from midg_keras.training import trainer
from midg_keras.tuning import search
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from test_tuning import search_config, without_test_splits

workdir, source, kill_trial = sys.argv[1], sys.argv[2], int(sys.argv[3])
search.prepare_data = without_test_splits(search.prepare_data)
fits = []


class KillInTrial(trainer.StopOnNonFiniteLoss):
    def on_train_begin(self, logs=None):
        fits.append(1)
        if len(fits) == kill_trial + 1:
            os.kill(os.getpid(), signal.SIGKILL)


trainer.StopOnNonFiniteLoss = KillInTrial  # created by trainer.fit_callbacks for each trial
search.run_search(search_config(source, workdir))
"""


def search_config(source, workdir, **changes):
    values = dict(
        mode="tune", source=source, modalities="t", hidden_dim=16, num_heads=2, num_experts=2,
        batch_size=8, epochs=2, verbose=0, workdir=str(workdir), tuner="random", max_trials=2,
        search_space=SPACE,
    )  # fmt: skip
    values.update(changes)
    return Config(**values).validate()


class _UnreadableSplit:
    """Stands in for a test split during a search: any use of it fails the trial."""

    def __init__(self, name):
        self.name = name

    def __iter__(self):
        raise AssertionError(f"the search read {self.name}")

    def __getattr__(self, attribute):
        raise AssertionError(f"the search used {self.name} (.{attribute})")


def without_test_splits(prepare_data):
    """`prepare_data` whose every test split (targets', and sources' own) cannot be read."""

    def prepare(config):
        data = prepare_data(config)
        for source in data.sources + data.targets:
            source.splits = dict(source.splits, test=_UnreadableSplit(f"{source.name} test"))
        unreadable = [_UnreadableSplit(f"{target.name} test") for target in data.targets]
        return dataclasses.replace(data, tests=unreadable)

    return prepare


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("tuning") / "mosi.pkl"
    write_pickle(make_fake_mmsa("mosi_unaligned", sizes=(16, 8, 8)), str(path))
    return f"pickle:{path}"


# --- search space -------------------------------------------------------------------------


def test_search_space_kinds_parse_to_the_flag_types():
    params = {p.name: p for p in parse_search_space(
        " hidden_dim=choice:32|64 ; num_experts=int:2:8:2; dropout=float:0:0.3;"
        "learning_rate=float:1e-4:1e-2:log; use_moie=choice:true|false; decouple=choice:club|kl_recon;"
        "alpha=choice:1|2", Config(num_heads=4))}  # fmt: skip
    assert params["hidden_dim"].values == (32, 64)
    assert params["num_experts"].corner_values() == [2, 4, 6, 8]
    dropout = params["dropout"]
    assert (dropout.low, dropout.high, dropout.log) == (0.0, 0.3, False)
    assert params["learning_rate"].log
    assert params["use_moie"].values == (True, False)
    assert params["decouple"].values == ("club", "kl_recon")
    assert params["alpha"].values == (1.0, 2.0) and isinstance(params["alpha"].values[0], float)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "needs --search_space"),
        ("hidden_dim", "write `name=choice"),
        ("hiden_dim=choice:8|16", "no flag --hiden_dim"),
        ("epochs=int:1:5", "not a hyper-parameter"),
        ("hidden_dim=range:1:5", "unknown kind"),
        ("hidden_dim=float:1:5", "float flags only"),
        ("alpha=int:1:5", "integer flags only"),
        ("alpha=float:2:1", "lo < hi"),
        ("learning_rate=float:0:1e-2:log", "lo > 0"),
        ("use_moie=choice:yes|no", "not a valid bool"),
        ("num_experts=choice:2|2", "distinct"),
        ("alpha=float:1:2; alpha=float:0:1", "more than once"),
        ("hidden_dim=choice:16|17", "hidden_dim=17"),
        ("router_top_k=int:0:3", "router_top_k=3"),
        ("dropout=float:0:1", "dropout=1.0"),
    ],
)
def test_bad_search_spaces_are_refused_in_one_line(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_search_space(spec, Config(num_heads=2, num_experts=2))
    assert "\n" not in str(error.value)


# --- best flagfile --------------------------------------------------------------------------


def _parse_like_train_py(flagfile):
    """What `python train.py --flagfile=...` turns the file into."""
    values = flags.FlagValues()
    midg_flags.define_flags(values)
    args = expand_flagfiles(
        ["train.py", f"--flagfile={flagfile}"],
        path_flags=midg_flags.PATH_FLAGS,
        source_flags=midg_flags.SOURCE_FLAGS,
    )
    values(args)
    return midg_flags.config_from_flags(values)


def test_flagfile_round_trips_every_flag_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config(
        source="pickle:data/a.pkl@sims,mosi/unaligned_50", manual_dir="mmsa", use_moie=False,
        manual_dirs="mosi=MOSI,sims=/data/SIMS",
        alpha=0.123456789012345, learning_rate=3e-4, modalities="t,a", av_stride="2",
        workdir=str(tmp_path / "best"),
    ).validate()  # fmt: skip
    path = tmp_path / "out" / "best.flags"
    path.parent.mkdir()
    write_flagfile(str(path), config, header=["a comment"])
    monkeypatch.chdir(REPO)
    parsed = _parse_like_train_py(str(path))
    expected = config.replace(
        source=f"pickle:{tmp_path}/data/a.pkl@sims,mosi/unaligned_50",
        manual_dir=str(tmp_path / "mmsa"),
        manual_dirs=f"mosi={tmp_path}/MOSI,sims=/data/SIMS",
    )
    assert parsed == expected
    assert open(path).read().startswith("# a comment\n")


def test_flagfile_round_trips_label_csv_and_several_targets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config(
        source="pickle:data/a.pkl",
        label_csv="data/label.csv",
        target="pickle:data/a.pkl,mosei/unaligned_50,pickle:/data/s.pkl@sims",
        workdir=str(tmp_path / "best"),
    ).validate()
    path = tmp_path / "out" / "best.flags"
    path.parent.mkdir()
    write_flagfile(str(path), config)
    monkeypatch.chdir(REPO)
    assert _parse_like_train_py(str(path)) == config.replace(
        source=f"pickle:{tmp_path}/data/a.pkl",
        label_csv=f"{tmp_path}/data/label.csv",
        target=f"pickle:{tmp_path}/data/a.pkl,mosei/unaligned_50,pickle:/data/s.pkl@sims",
    )


# --- the real search: kill, resume, best flagfile ----------------------------------------


@pytest.fixture(scope="module")
def resumed_search(source, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("search") / "tune"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    killed = subprocess.run(
        [sys.executable, "-c", WORKER, str(workdir), source, "1"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, (killed.stdout + killed.stderr)[-4000:]
    first_checkpoint = workdir / "search" / "trial_0" / "checkpoint.weights.h5"
    state = {
        "trial_0_mtime": os.path.getmtime(first_checkpoint),
        "trial_1_done": os.path.exists(workdir / "search" / "trial_1" / "checkpoint.weights.h5"),
        "best_written": os.path.exists(workdir / "best.flags"),
    }
    config = search_config(source, workdir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search, "prepare_data", without_test_splits(search.prepare_data))
        return config, run_search(config), state


def test_killed_search_resumes_where_it_stopped(resumed_search):
    config, _, state = resumed_search
    assert not state["best_written"] and not state["trial_1_done"]
    # Trial 0 was not trained again; trial 1 (cut short) was.
    checkpoint = os.path.join(config.workdir, "search", "trial_0", "checkpoint.weights.h5")
    assert os.path.getmtime(checkpoint) == state["trial_0_mtime"]
    with open(os.path.join(config.workdir, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["trial_id"], r["status"]) for r in rows] == [("0", "COMPLETED"), ("1", "COMPLETED")]
    scores = [float(r[OBJECTIVE]) for r in rows]
    assert all(0 < s < 10 for s in scores)
    assert {r["use_moie"] for r in rows} <= {"True", "False"}


def test_objective_is_the_source_validation_loss_of_each_trials_best_checkpoint(
    resumed_search,
):
    """trials.csv's score = `prediction_loss` of the trial's saved weights on source validation.

    The search itself ran with every test split unreadable (`without_test_splits`), so no
    trial read a target; here each trial's best-epoch checkpoint is scored again.
    """
    config, _, _ = resumed_search
    with open(os.path.join(config.workdir, "trials.csv")) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        trial = config.replace(
            num_experts=int(row["num_experts"]),
            alpha=float(row["alpha"]),
            learning_rate=float(row["learning_rate"]),
            use_moie=row["use_moie"] == "True",
        ).validate()
        data = prepare_data(trial)
        model = trainer.compiled_model(trial, data)
        model.load_weights(
            os.path.join(config.workdir, "search", f"trial_{row['trial_id']}", CHECKPOINT)
        )
        scores = model.evaluate(data.validation, return_dict=True, verbose=0)
        assert float(row[OBJECTIVE]) == pytest.approx(scores["prediction_loss"], rel=1e-5), row
    # The total loss depends on alpha: had the search ranked trials by it, this would differ.
    assert scores["loss"] != pytest.approx(scores["prediction_loss"], rel=1e-3)


def test_best_flagfile_is_accepted_by_train_py_and_holds_the_best_trial(resumed_search):
    config, path, _ = resumed_search
    assert path == os.path.join(config.workdir, "best.flags")
    with open(os.path.join(config.workdir, "trials.csv")) as f:
        best = min(csv.DictReader(f), key=lambda r: float(r[OBJECTIVE]))
    parsed = _parse_like_train_py(path)
    assert parsed.mode == "train" and parsed.search_space == ""
    assert parsed.workdir == os.path.join(os.path.abspath(config.workdir), "best")
    assert parsed.num_experts == int(best["num_experts"])
    assert parsed.alpha == float(best["alpha"])
    assert parsed.learning_rate == float(best["learning_rate"])
    assert parsed.use_moie == (best["use_moie"] == "True")
    untouched = {f.name for f in dataclasses.fields(Config)} - {
        "mode", "tuner", "max_trials", "executions_per_trial", "search_space", "workdir",
        "num_experts", "alpha", "learning_rate", "use_moie",
    }  # fmt: skip
    for name in untouched:
        assert getattr(parsed, name) == getattr(config, name), name
    assert f"val_prediction_loss {float(best[OBJECTIVE]):.6g}" in open(path).read()


def test_every_trial_logs_to_tensorboard_with_its_hyperparameters(resumed_search):
    from tensorboard.backend.event_processing import event_accumulator

    config, _, _ = resumed_search
    for trial in ("0", "1"):
        folder = os.path.join(config.workdir, "logs", trial, "execution0")
        assert glob.glob(os.path.join(folder, "train", "events.*"))
        assert glob.glob(os.path.join(folder, "validation", "events.*"))
        events = event_accumulator.EventAccumulator(folder)
        events.Reload()
        assert "_hparams_/session_start_info" in events.Tags()["tensors"]


def test_resuming_with_another_search_space_is_refused(resumed_search):
    config, _, _ = resumed_search
    with pytest.raises(ConfigError, match="other settings \\(search_space\\)"):
        run_search(config.replace(search_space="alpha=float:0.5:1"))


# --- the other tuners and failures, with a stand-in fit -------------------------------


@pytest.fixture
def stand_in_fit(monkeypatch):
    """Trials build a one-weight model and score (alpha - 1.3)^2 without training."""
    fits = []

    def compiled_model(config, data, model_name=None, strategy=None):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    save_best_epoch = keras_compat.keras_tuner_save_best_epoch_class()

    def fit(self, hp, model, *args, **kwargs):
        config = self.trial_config(hp)
        fits.append((config, kwargs))
        logs = {OBJECTIVE: (config.alpha - 1.3) ** 2}
        for callback in kwargs["callbacks"]:
            if isinstance(callback, save_best_epoch):  # Hyperband continues from it
                callback.set_model(model)
                callback.on_epoch_end(0, logs)
        return logs

    monkeypatch.setattr(search.trainer, "compiled_model", compiled_model)
    monkeypatch.setattr(search.MIDGHyperModel, "fit", fit)
    return fits


def test_bayesian_search_uses_the_source_validation_objective(source, tmp_path, stand_in_fit):
    config = search_config(
        source, tmp_path / "tune", tuner="bayesian", max_trials=5, search_space="alpha=float:0:3"
    )
    path = run_search(config)
    assert len(stand_in_fit) == 5  # 3 random starting points, then 2 from the GP
    best = _parse_like_train_py(path)
    tried = sorted((c.alpha - 1.3) ** 2 for c, _ in stand_in_fit)
    assert (best.alpha - 1.3) ** 2 == pytest.approx(tried[0])


def test_hyperband_passes_its_epoch_budget_to_fit(source, tmp_path, stand_in_fit):
    config = search_config(
        source, tmp_path / "tune", tuner="hyperband", epochs=4, search_space="alpha=float:0:3"
    )
    run_search(config)
    epochs = sorted({kwargs["epochs"] for _, kwargs in stand_in_fit})
    assert epochs[-1] == 4 and len(epochs) > 1  # brackets train for growing budgets
    assert os.path.exists(os.path.join(config.workdir, "best.flags"))


def test_a_failing_trial_fails_the_search_loudly(source, tmp_path, stand_in_fit, monkeypatch):
    def broken_fit(self, hp, model, *args, **kwargs):
        with search._trial_errors(self.trial_config(hp), self.params):
            raise RuntimeError("out of memory")

    monkeypatch.setattr(search.MIDGHyperModel, "fit", broken_fit)
    config = search_config(source, tmp_path / "tune", search_space="alpha=float:0:3")
    message = r"tuning trial with alpha=.* failed: RuntimeError: out of memory"
    with pytest.raises(TrialError, match=message):
        run_search(config)
    assert not os.path.exists(os.path.join(config.workdir, "best.flags"))


def test_bad_data_in_a_trial_surfaces_as_the_data_error(
    source, tmp_path, stand_in_fit, monkeypatch
):
    def bad_data(config):
        raise DataError("contains NaN", file="x.pkl", split="train", key="audio")

    monkeypatch.setattr(search, "prepare_data", bad_data)
    with pytest.raises(DataError, match="contains NaN"):
        run_search(search_config(source, tmp_path / "tune", search_space="alpha=float:0:3"))


def test_missing_bayesian_dependencies_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    with pytest.raises(ConfigError, match="needs scikit-learn: pip install -r requirements.txt"):
        search.check_dependencies("bayesian")
    search.check_dependencies("random")


TUNE_FLAGFILES = sorted(glob.glob(os.path.join(REPO, "configs", "tune_*.flags")))


@pytest.mark.parametrize("flagfile", TUNE_FLAGFILES)
def test_shipped_tune_flagfiles_declare_valid_searches(flagfile):
    config = _parse_like_train_py(flagfile)
    assert config.mode == "tune"
    params = parse_search_space(config.search_space, config)
    assert {"alpha", "learning_rate"} <= {p.name for p in params}


def test_shipped_tune_flagfiles_cover_every_tuner():
    paths = glob.glob(os.path.join(REPO, "configs", "tune_*.flags"))
    assert {_parse_like_train_py(p).tuner for p in paths} == {"random", "bayesian", "hyperband"}
