"""End-to-end runs on small MMSA-layout pickles: outputs, DG pairs, evaluate, seeds."""

import csv
import json
import math
import os

import numpy as np
import pytest

from midg_keras.config import Config
from midg_keras.data.pipeline import target_slug
from midg_keras.metrics import MOSI_KEYS, SIMS_KEYS
from midg_keras.training import experiment
from midg_keras.training.callbacks import (
    GradientReversalSchedule,
    StopOnNonFiniteLoss,
    ValidationMetrics,
)
from tests.fake_mmsa import make_fake_mmsa, write_pickle
from tests.test_metrics import _mmsa_eval_mosei_regression, _mmsa_eval_sims_regression

TINY = dict(hidden_dim=16, num_heads=2, num_experts=2, batch_size=8, epochs=2, verbose=0)


def _pickle(tmp_path, layout, sizes=(24, 8, 10), seed=0):
    path = tmp_path / f"{layout}_{seed}.pkl"
    write_pickle(make_fake_mmsa(layout, sizes=sizes, seed=seed), str(path))
    return str(path)


@pytest.fixture(scope="module")
def dg_run(tmp_path_factory):
    """MIDG and the ERM baseline trained on a MOSI-like file, tested on a SIMS-like one."""
    tmp_path = tmp_path_factory.mktemp("dg")
    config = Config(
        source=f"pickle:{_pickle(tmp_path, 'mosi_unaligned')}@mosi",
        target=f"pickle:{_pickle(tmp_path, 'sims_unaligned')}@sims",
        harmonize="pad",
        baselines="erm",
        workdir=str(tmp_path / "run"),
        **TINY,
    ).validate()
    return config, experiment.run(config, log=lambda _: None)


def test_run_writes_every_output(dg_run):
    config, _ = dg_run
    for workdir in (config.workdir, os.path.join(config.workdir, "baselines", "erm")):
        for name in ("config.json", "history.csv", "metrics.json", "model.keras"):
            assert os.path.exists(os.path.join(workdir, name)), name
        with open(os.path.join(workdir, "history.csv")) as f:
            assert len(list(csv.DictReader(f))) == TINY["epochs"]
        saved = Config.from_json(open(os.path.join(workdir, "config.json")).read())
        assert saved.source == config.source and saved.hidden_dim == 16
        recorded = json.load(open(os.path.join(workdir, "config.json")))["data_sources"]
        assert recorded["target"]["label_family"] == "sims"
    with open(os.path.join(config.workdir, "history.csv")) as f:
        header = next(csv.reader(f))
    for term in ("in_loss", "out_loss", "domain_loss", "decoupling_loss", "val_prediction_loss"):
        assert term in header
    # ValidationMetrics runs before CSVLogger: native-scale MOSI-family validation metrics.
    assert "val_MAE" in header and "val_Non0_acc_2" in header
    for name in ("curves.png", "test_scatter.png"):
        path = os.path.join(config.workdir, "plots", name)
        assert os.path.getsize(path) > 1000, path
    table = open(os.path.join(config.workdir, "results.md")).read()
    assert "| MIDG |" in table and "| ERM (late fusion) |" in table


def test_dg_metrics_use_each_sides_family_and_native_scale(dg_run):
    config, results = dg_run
    metrics = json.load(open(os.path.join(config.workdir, "metrics.json")))
    assert set(metrics) == {"valid", "test", "test_by_target"}
    assert metrics["test_by_target"] == {config.target: metrics["test"]}
    assert set(metrics["valid"]) == set(MOSI_KEYS)  # source validation: MOSI family
    assert set(metrics["test"]) == set(SIMS_KEYS)  # target test: SIMS family
    assert results["midg"][0] == metrics
    with open(os.path.join(config.workdir, "predictions", "test.csv")) as f:
        rows = list(csv.DictReader(f))
    raw = make_fake_mmsa("sims_unaligned", sizes=(24, 8, 10))["test"]
    assert [r["id"] for r in rows] == list(raw["id"])
    np.testing.assert_allclose(
        [float(r["label"]) for r in rows], raw["regression_labels"], rtol=1e-6
    )


@pytest.fixture(scope="module")
def two_target_run(dg_run, tmp_path_factory):
    """dg_run's MIDG, tested on its SIMS-like target and on a MOSEI-like one too."""
    config, _ = dg_run
    mosei = _pickle(tmp_path_factory.mktemp("mosei"), "mosei_unaligned")
    two = config.replace(
        target=f"{config.target},pickle:{mosei}@mosei",
        baselines="",
        workdir=config.workdir + "_two_targets",
    ).validate()
    return two, experiment.run(two, log=lambda _: None)


def test_several_targets_score_the_one_source_selected_model(dg_run, two_target_run):
    config, results = two_target_run
    first, second = config.target.split(",")
    metrics = json.load(open(os.path.join(config.workdir, "metrics.json")))
    assert results["midg"][0] == metrics
    assert list(metrics["test_by_target"]) == [first, second]
    assert set(metrics["test_by_target"][second]) == set(MOSI_KEYS)  # MOSEI family
    assert metrics["test"] == metrics["test_by_target"][first]
    # Selection never sees a target: the model and its scores equal the one-target run's.
    one_target = dg_run[1]["midg"][0]
    assert metrics["valid"] == pytest.approx(one_target["valid"], abs=1e-6)
    assert metrics["test"] == pytest.approx(one_target["test"], abs=1e-6)
    predictions = os.path.join(config.workdir, "predictions")
    slugs = [target_slug(name) for name in (first, second)]
    assert sorted(os.listdir(predictions)) == sorted(
        ["test.csv"] + [f"test_{s}.csv" for s in slugs]
    )
    with (
        open(os.path.join(predictions, "test.csv")) as f,
        open(os.path.join(predictions, f"test_{slugs[0]}.csv")) as g,
    ):
        assert f.read() == g.read()
    header = open(os.path.join(config.workdir, "results.md")).read().splitlines()[2]
    assert f"| {first} ACC |" in header and f"| {second} Corr |" in header
    again = experiment.run(config.replace(mode="evaluate"), evaluate_only=True, log=lambda _: None)
    for name in (first, second):  # --mode=evaluate re-scores every target
        rescored = again["midg"][0]["test_by_target"][name]
        assert rescored == pytest.approx(metrics["test_by_target"][name], abs=1e-6)


# The independent copy of MMSA's metric code in tests/test_metrics.py, per label family.
MMSA_REFERENCE = {
    "mosi": _mmsa_eval_mosei_regression,
    "mosei": _mmsa_eval_mosei_regression,
    "sims": _mmsa_eval_sims_regression,
}


def _rescore_predictions_csv(path, family):
    """MMSA's metrics of a predictions csv: (metrics, ids, labels, predictions)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    labels = np.asarray([float(r["label"]) for r in rows], np.float32)
    predictions = np.asarray([float(r["prediction"]) for r in rows], np.float32)
    scores = {k: float(v) for k, v in MMSA_REFERENCE[family](predictions, labels).items()}
    return scores, [r["id"] for r in rows], labels, predictions


def test_evaluate_reproduces_metrics(dg_run):
    """--mode=evaluate rewrites metrics.json: every key is MMSA's metric of test.csv."""
    config, results = dg_run
    again = experiment.run(config.replace(mode="evaluate"), evaluate_only=True, log=lambda _: None)
    for name, workdir in (
        ("midg", config.workdir),
        ("erm", os.path.join(config.workdir, "baselines", "erm")),
    ):
        assert again[name][0]["test"] == pytest.approx(results[name][0]["test"], abs=1e-6)
        written = json.load(open(os.path.join(workdir, "metrics.json")))
        expected, ids, labels, _ = _rescore_predictions_csv(
            os.path.join(workdir, "predictions", "test.csv"), "sims"
        )
        assert set(written["test"]) == set(expected)
        for key, value in expected.items():  # both round to 4 decimals, as MMSA does
            assert written["test"][key] == pytest.approx(value, abs=1e-12), (name, key)
        raw = make_fake_mmsa("sims_unaligned", sizes=(24, 8, 10))["test"]
        assert ids == list(raw["id"])
        np.testing.assert_array_equal(labels, raw["regression_labels"].astype(np.float32))


def test_prediction_column_is_on_each_targets_native_scale(two_target_run):
    """The MOSEI-like target (scale 3) gets 3 x the model's common-scale output."""
    import keras

    from midg_keras.data.pipeline import prepare_data

    config, results = two_target_run
    model = keras.saving.load_model(os.path.join(config.workdir, "model.keras"))
    data = prepare_data(config)
    for target, dataset in zip(data.targets, data.tests):
        outputs = [
            (ids.numpy(), model(inputs, training=False)["prediction"].numpy())
            for inputs, _, ids in dataset
        ]
        ids = [i.decode() for i in np.concatenate([ids for ids, _ in outputs])]
        common = np.concatenate([prediction for _, prediction in outputs])
        path = os.path.join(config.workdir, "predictions", f"test_{target_slug(target.name)}.csv")
        expected, written_ids, labels, predictions = _rescore_predictions_csv(path, target.family)
        assert written_ids == ids
        scale = {"sims": 1.0, "mosei": 3.0}[target.family]
        assert target.label_scale == scale
        np.testing.assert_allclose(predictions, common * scale, rtol=1e-5, atol=1e-6)
        assert np.abs(labels).max() > 1.0 or target.family == "sims"  # native labels too
        written = results["midg"][0]["test_by_target"][target.name]
        for key, value in expected.items():
            assert written[key] == pytest.approx(value, abs=1e-12), (target.name, key)


def test_several_seeds_get_their_own_folders_and_mean_std(tmp_path):
    config = Config(
        source=f"pickle:{_pickle(tmp_path, 'mosi_aligned')}",
        model="erm",
        seeds="1,2",
        workdir=str(tmp_path / "run"),
        **{**TINY, "epochs": 1},
    ).validate()
    results = experiment.run(config, log=lambda _: None)
    assert len(results["erm"]) == 2
    for seed in (1, 2):
        assert os.path.exists(tmp_path / "run" / f"seed_{seed}" / "model.keras")
    summary = json.load(open(tmp_path / "run" / "metrics.json"))
    # Each seed trained its own model: other initial weights, dropout and shuffling. Far more
    # than the run-to-run noise of one seed without --deterministic (~1e-6 on this model).
    predictions = []
    for seed in (1, 2):
        with open(tmp_path / "run" / f"seed_{seed}" / "predictions" / "test.csv") as f:
            predictions.append(np.array([float(r["prediction"]) for r in csv.DictReader(f)]))
    assert np.abs(predictions[0] - predictions[1]).max() > 1e-3
    assert results["erm"][0]["valid"] != results["erm"][1]["valid"]
    mae = [r["test"]["MAE"] for r in results["erm"]]
    assert summary["seeds"] == [1, 2]
    assert summary["test"]["MAE"] == pytest.approx(np.mean(mae))
    assert summary["test_std"]["MAE"] == pytest.approx(np.std(mae))
    assert summary["test_by_target"] == {config.source: summary["test"]}
    assert summary["test_by_target_std"] == {config.source: summary["test_std"]}


def test_validation_metrics_use_the_native_scale_and_the_familys_accuracy():
    class HalfTheLabel:  # predicts label / 2 on the common scale
        def __call__(self, inputs, training=False):
            return {"prediction": inputs["label"] / 2}

    labels = np.array([[0.5, -0.5], [1.0, -0.25]], np.float32)  # SIMS: scale 1
    batches = [({"label": row}, row) for row in labels]
    callback = ValidationMetrics(batches, family="sims", label_scale=1.0)
    callback.set_model(HalfTheLabel())
    logs = {"val_loss": 0.1}
    callback.on_epoch_end(0, logs)
    assert logs["val_MAE"] == pytest.approx(np.abs(labels / 2).mean(), abs=1e-4)
    assert logs["val_Mult_acc_2"] == 1.0 and logs["val_loss"] == 0.1
    mosi = ValidationMetrics(batches, family="mosi", label_scale=3.0)
    mosi.set_model(HalfTheLabel())
    logs = {}
    mosi.on_epoch_end(0, logs)
    assert logs["val_MAE"] == pytest.approx(3 * np.abs(labels / 2).mean(), abs=1e-4)
    assert set(logs) == {"val_MAE", "val_Non0_acc_2"}


class _FakeReversal:
    class grl_lambda:  # noqa: N801  (stands in for a keras Variable)
        value = None

        @classmethod
        def assign(cls, value):
            cls.value = value


def test_dann_schedule_ramps_from_zero_to_max():
    schedule = GradientReversalSchedule(_FakeReversal, steps_per_epoch=10, epochs=2, max_lambda=0.5)
    schedule.on_epoch_begin(0)
    schedule.on_train_batch_begin(0)
    assert _FakeReversal.grl_lambda.value == 0.0
    schedule.on_epoch_begin(1)
    schedule.on_train_batch_begin(0)  # step 10 of 20: p = 0.5
    assert _FakeReversal.grl_lambda.value == pytest.approx(0.5 * (2 / (1 + math.exp(-5)) - 1))
    constant = GradientReversalSchedule(_FakeReversal, 10, 2, max_lambda=0.3, schedule="constant")
    constant.on_train_batch_begin(0)
    assert _FakeReversal.grl_lambda.value == 0.3


def test_nan_loss_stops_with_advice():
    callback = StopOnNonFiniteLoss()
    callback.on_epoch_begin(2)
    callback.on_train_batch_end(0, {"loss": 1.0})
    with pytest.raises(FloatingPointError, match="epoch 3, batch 5: lower --learning_rate"):
        callback.on_train_batch_end(4, {"loss": float("nan")})


@pytest.mark.parametrize(
    "flags, epoch, expected",
    [
        ("--grl_schedule=constant --grl_max=0.3", 0, 0.3),
        ("--grl_max=0.8", 2, 0.8 * (2 / (1 + math.exp(-5)) - 1)),  # dann: step 10 of 20
    ],
)
def test_fit_callbacks_schedule_the_models_reversal_from_the_flags(flags, epoch, expected):
    from absl import flags as absl_flags

    from midg_keras import flags as midg_flags
    from midg_keras.models import MIDG
    from midg_keras.training import trainer

    values = absl_flags.FlagValues()
    midg_flags.define_flags(values)
    values(["train.py", "--epochs=4", *flags.split()])
    config = midg_flags.config_from_flags(values)
    model = MIDG(input_dims={"text": 4}, strides={"text": 1}, hidden_dim=8, num_heads=2)
    callbacks = trainer.fit_callbacks(model, config, steps=5)
    schedules = [c for c in callbacks if isinstance(c, GradientReversalSchedule)]
    assert len(schedules) == 1
    schedules[0].on_epoch_begin(epoch)
    schedules[0].on_train_batch_begin(0)
    assert float(model.gradient_reversal.grl_lambda.numpy()) == pytest.approx(expected, rel=1e-6)
    erm = trainer.build_model(config.replace(model="erm"), _FakeData())
    assert not any(isinstance(c, GradientReversalSchedule) for c in trainer.fit_callbacks(
        erm, config, steps=5))  # fmt: skip


class _FakeData:
    dims, strides, sources = {"text": 4}, {"text": 1}, [None]


@pytest.mark.parametrize("reg_loss", ["l1", "mse"])
def test_validation_loss_is_a_mean_over_clips_not_over_batches(tmp_path, reg_loss):
    """8 validation clips in batches of 3, 3 and 2: the last batch must weigh 2/8, not 1/3."""
    from midg_keras.data.pipeline import prepare_data
    from midg_keras.training import trainer
    from midg_keras.training.prediction import predict

    config = Config(
        source=f"pickle:{_pickle(tmp_path, 'mosi_unaligned')}",
        **{**TINY, "batch_size": 3, "reg_loss": reg_loss},
    ).validate()
    data = prepare_data(config)
    model = trainer.compiled_model(config, data)
    _, labels, predictions = predict(model, data.validation)
    assert len(labels) == 8
    errors = predictions - labels
    expected = np.abs(errors).mean() if reg_loss == "l1" else np.square(errors).mean()
    scores = model.evaluate(data.validation, return_dict=True, verbose=0)
    assert scores["prediction_loss"] == pytest.approx(expected, rel=1e-5)
    assert scores["loss"] == pytest.approx(scores["prediction_loss"] + scores["in_loss"], rel=1e-5)
