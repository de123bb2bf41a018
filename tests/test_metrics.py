"""MMSA-exact metrics: hand-computed cases and a reference copied from MMSA's code."""

import csv
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from midg_keras import metrics
from tests.real_data import real_data_file

# --- Hand-computed cases ---------------------------------------------------------------


def test_mult_acc_rounds_half_to_even():
    # round: 2.5 -> 2 (not 3), -0.5 -> -0 == 0 (not -1), 1.5 -> 2, 0.4 -> 0: all 4 match.
    # Rounding half away from zero would match only 1.5 and 0.4 (0.5).
    result = metrics.mosi_metrics([2.5, -0.5, 1.5, 0.4], [2.0, 0.0, 2.0, 0.0])
    assert result["Mult_acc_7"] == 1.0
    assert result["Mult_acc_5"] == 1.0


def test_mult_acc_5_and_7_clip_differently():
    # 7 classes (clip ±3): round(3.0)=3 vs round(2.2)=2 wrong; -2.6 -> -3 vs -3 right: 0.5.
    # 5 classes (clip ±2): [2, -2] vs [2, -2]: both right: 1.0.
    result = metrics.mosi_metrics([3.0, -2.6], [2.2, -3.0])
    assert result["Mult_acc_7"] == 0.5
    assert result["Mult_acc_5"] == 1.0


def test_has0_counts_zero_positive_and_non0_drops_zero_labels():
    y_true = [0.0, 0.0, 1.2, -0.8]
    y_pred = [0.0, -0.4, 0.9, 0.3]
    result = metrics.mosi_metrics(y_pred, y_true)
    # Has0 (>= 0): truth [T, T, T, F], pred [T, F, T, T] -> right at 0 and 2: acc 0.5.
    # F1 of T: TP 2, FP 1, FN 1 -> 2/3 (support 3); F1 of F: TP 0 -> 0 (support 1).
    # Weighted: (3 * 2/3 + 1 * 0) / 4 = 0.5.
    assert result["Has0_acc_2"] == 0.5
    assert result["Has0_F1_score"] == 0.5
    # Non0 keeps samples 2 and 3 (label != 0), > 0: truth [T, F], pred [T, T]: acc 0.5.
    # F1 of T: P 1/2, R 1 -> 2/3; F1 of F: 0; weighted (2/3 + 0) / 2 = 1/3 -> 0.3333.
    assert result["Non0_acc_2"] == 0.5
    assert result["Non0_F1_score"] == 0.3333
    # MAE: (0 + 0.4 + 0.3 + 1.1) / 4 = 0.45.
    assert result["MAE"] == 0.45


def test_mosi_mae_uses_raw_predictions_but_accuracies_clip():
    # MAE (0.5 + 0) / 2 = 0.5 on raw values; Mult_acc_7: clip(4.0) = 3 == 3.
    result = metrics.mosi_metrics([4.0, -3.0], [3.0, -3.0])
    assert result["MAE"] == 0.5
    assert result["Mult_acc_7"] == 1.0
    assert result["Corr"] == 1.0


def test_sims_zero_is_negative_and_classes_and_weighted_f1():
    y_true = [0.0, 0.0, 0.5, -0.5]
    y_pred = [-0.3, 0.2, 0.0, -0.9]
    result = metrics.sims_metrics(y_pred, y_true)
    # 2 classes, edges (-1.01, 0, 1.01], 0 negative: truth [0, 0, 1, 0], pred [0, 1, 0, 0]
    # -> right at 0 and 3: 0.5 (with 0 positive it would be [1,1,1,0] vs [0,1,1,0]: 0.75).
    assert result["Mult_acc_2"] == 0.5
    # F1 class 0: TP 2 (0, 3), FP 1 (2), FN 1 (1) -> 2/3, support 3; class 1: 0, support 1.
    # Weighted: 3/4 * 2/3 = 0.5.
    assert result["F1_score"] == 0.5
    # 3 classes (-1.01, -0.1, 0.1, 1.01]: truth [1, 1, 2, 0], pred [0, 2, 1, 0]: 1 of 4.
    assert result["Mult_acc_3"] == 0.25
    # 5 classes: truth [2, 2, 3, 1], pred [1, 3, 2, 0]: none.
    assert result["Mult_acc_5"] == 0.0
    # MAE (0.3 + 0.2 + 0.5 + 0.4) / 4 = 0.35. Corr: pred deviations (-.05, .45, .25, -.65),
    # truth deviations (0, 0, .5, -.5): 0.45 / sqrt(0.69 * 0.5) = 0.76613 -> 0.7661.
    assert result["MAE"] == 0.35
    assert result["Corr"] == 0.7661


def test_sims_clips_before_everything():
    # Clipped predictions equal the labels exactly: MAE 0 (1.4 without clipping), Corr 1.
    result = metrics.sims_metrics([1.8, -3.0], [1.0, -1.0])
    assert result == {
        "Mult_acc_2": 1.0,
        "Mult_acc_3": 1.0,
        "Mult_acc_5": 1.0,
        "F1_score": 1.0,
        "MAE": 0.0,
        "Corr": 1.0,
    }


def test_sims_class_edges_are_right_closed_in_float32():
    values = np.asarray([0.1, -0.1, 0.7, -0.7, 0.0], dtype=np.float32)
    # (-1.01, -0.1], (-0.1, 0.1], (0.1, 1.01]
    np.testing.assert_array_equal(metrics.sims_classes(values, 3), [1, 0, 2, 0, 1])
    # (-1.01, -0.7], (-0.7, -0.1], (-0.1, 0.1], (0.1, 0.7], (0.7, 1.01]
    np.testing.assert_array_equal(metrics.sims_classes(values, 5), [2, 1, 3, 0, 2])
    np.testing.assert_array_equal(metrics.sims_classes(values, 2), [1, 0, 1, 0, 0])


def test_values_are_rounded_to_4_decimals_unless_asked_not_to():
    # Non0: 1 of 3 right -> 0.33333... -> 0.3333.
    y_pred, y_true = [1.0, 1.0, 1.0], [1.0, -1.0, -2.0]
    assert metrics.mosi_metrics(y_pred, y_true, decimals=None)["Non0_acc_2"] == pytest.approx(1 / 3)
    assert metrics.mosi_metrics(y_pred, y_true)["Non0_acc_2"] == 0.3333
    assert all(type(v) is float for v in metrics.mosi_metrics(y_pred, y_true).values())


def test_constant_predictions_give_nan_corr_and_are_degenerate():
    result = metrics.mosi_metrics([0.2, 0.2, 0.2], [1.0, -1.0, 2.0])
    assert math.isnan(result["Corr"])
    assert metrics.is_degenerate([0.2, 0.2, 0.2])
    assert "constant" in metrics.degenerate_reason([0.2, 0.2 + 1e-9, 0.2])
    assert "NaN" in metrics.degenerate_reason([0.2, np.nan, 0.5])
    assert metrics.is_degenerate([])
    assert not metrics.is_degenerate([0.2, 0.3])
    assert metrics.degenerate_reason([0.2, 0.3]) is None


def test_all_zero_labels_give_nan_non0_not_a_crash():
    result = metrics.mosi_metrics([0.5, -0.5], [0.0, 0.0])
    assert math.isnan(result["Non0_acc_2"]) and math.isnan(result["Non0_F1_score"])
    assert result["Has0_acc_2"] == 0.5


@pytest.mark.parametrize(
    "y_pred, y_true, message",
    [
        ([1.0, 2.0], [1.0], "one prediction per label"),
        ([], [], "empty"),
        ([np.nan, 1.0], [1.0, 1.0], "non-finite"),
        ([1.0, 1.0], [np.inf, 1.0], "non-finite"),
    ],
)
def test_bad_inputs_raise_clear_errors(y_pred, y_true, message):
    for function in (metrics.mosi_metrics, metrics.sims_metrics):
        with pytest.raises(ValueError, match=message):
            function(y_pred, y_true)


def test_family_lookup_and_headline_columns():
    assert metrics.metrics_for_family("mosi") is metrics.mosi_metrics
    assert metrics.metrics_for_family("mosei") is metrics.mosi_metrics
    assert metrics.metrics_for_family("sims") is metrics.sims_metrics
    with pytest.raises(ValueError, match="mosi, mosei, sims"):
        metrics.metrics_for_family("iemocap")
    mosei = metrics.mosi_metrics([1.0, -1.0, 0.5], [2.0, -1.0, -0.5])
    assert metrics.headline(mosei, "mosei") == {
        "ACC": mosei["Non0_acc_2"],
        "F1": mosei["Non0_F1_score"],
        "MAE": mosei["MAE"],
        "Corr": mosei["Corr"],
    }
    sims = metrics.sims_metrics([1.0, -1.0, 0.5], [0.2, -1.0, -0.5])
    assert metrics.headline(sims, "sims")["ACC"] == sims["Mult_acc_2"]
    assert tuple(mosei) == metrics.metric_keys("mosi")
    assert tuple(sims) == metrics.metric_keys("sims")


# --- Reference: thuiar/MMSA src/MMSA/utils/metricsTop.py (commit a94e65d) --------------
# MetricsTop.__eval_mosei_regression / __eval_sims_regression / __multiclass_acc, copied
# with `y.view(-1).cpu().detach().numpy()` replaced by the float32 array MMSA gets.


def _mmsa_multiclass_acc(y_pred, y_true):
    return np.sum(np.round(y_pred) == np.round(y_true)) / float(len(y_true))


def _mmsa_eval_mosei_regression(y_pred, y_true):
    test_preds = np.asarray(y_pred, dtype=np.float32).reshape(-1)
    test_truth = np.asarray(y_true, dtype=np.float32).reshape(-1)
    test_preds_a7 = np.clip(test_preds, a_min=-3.0, a_max=3.0)
    test_truth_a7 = np.clip(test_truth, a_min=-3.0, a_max=3.0)
    test_preds_a5 = np.clip(test_preds, a_min=-2.0, a_max=2.0)
    test_truth_a5 = np.clip(test_truth, a_min=-2.0, a_max=2.0)
    mae = np.mean(np.absolute(test_preds - test_truth)).astype(np.float64)
    corr = np.corrcoef(test_preds, test_truth)[0][1]
    mult_a7 = _mmsa_multiclass_acc(test_preds_a7, test_truth_a7)
    mult_a5 = _mmsa_multiclass_acc(test_preds_a5, test_truth_a5)
    non_zeros = np.array([i for i, e in enumerate(test_truth) if e != 0])
    non_zeros_binary_truth = test_truth[non_zeros] > 0
    non_zeros_binary_preds = test_preds[non_zeros] > 0
    non_zeros_acc2 = accuracy_score(non_zeros_binary_preds, non_zeros_binary_truth)
    non_zeros_f1_score = f1_score(
        non_zeros_binary_truth, non_zeros_binary_preds, average="weighted"
    )
    binary_truth = test_truth >= 0
    binary_preds = test_preds >= 0
    acc2 = accuracy_score(binary_preds, binary_truth)
    f_score = f1_score(binary_truth, binary_preds, average="weighted")
    return {
        "Has0_acc_2": round(acc2, 4),
        "Has0_F1_score": round(f_score, 4),
        "Non0_acc_2": round(non_zeros_acc2, 4),
        "Non0_F1_score": round(non_zeros_f1_score, 4),
        "Mult_acc_5": round(mult_a5, 4),
        "Mult_acc_7": round(mult_a7, 4),
        "MAE": round(mae, 4),
        "Corr": round(corr, 4),
    }


def _mmsa_eval_sims_regression(y_pred, y_true):
    test_preds = np.asarray(y_pred, dtype=np.float32).reshape(-1)
    test_truth = np.asarray(y_true, dtype=np.float32).reshape(-1)
    test_preds = np.clip(test_preds, a_min=-1.0, a_max=1.0)
    test_truth = np.clip(test_truth, a_min=-1.0, a_max=1.0)

    def bins(edges):
        preds, truth = test_preds.copy(), test_truth.copy()
        for i in range(len(edges) - 1):
            preds[np.logical_and(test_preds > edges[i], test_preds <= edges[i + 1])] = i
        for i in range(len(edges) - 1):
            truth[np.logical_and(test_truth > edges[i], test_truth <= edges[i + 1])] = i
        return preds, truth

    test_preds_a2, test_truth_a2 = bins([-1.01, 0.0, 1.01])
    test_preds_a3, test_truth_a3 = bins([-1.01, -0.1, 0.1, 1.01])
    test_preds_a5, test_truth_a5 = bins([-1.01, -0.7, -0.1, 0.1, 0.7, 1.01])
    mae = np.mean(np.absolute(test_preds - test_truth)).astype(np.float64)
    corr = np.corrcoef(test_preds, test_truth)[0][1]
    return {
        "Mult_acc_2": round(_mmsa_multiclass_acc(test_preds_a2, test_truth_a2), 4),
        "Mult_acc_3": round(_mmsa_multiclass_acc(test_preds_a3, test_truth_a3), 4),
        "Mult_acc_5": round(_mmsa_multiclass_acc(test_preds_a5, test_truth_a5), 4),
        "F1_score": round(f1_score(test_truth_a2, test_preds_a2, average="weighted"), 4),
        "MAE": round(mae, 4),
        "Corr": round(corr, 4),
    }


def _random_cases(scale, seed):
    """Predictions and labels on a 0.1 grid (exact ties: .5 rounding, 0 labels, edges)."""
    rng = np.random.default_rng(seed)
    for size in (5, 40, 301):
        y_true = np.round(rng.uniform(-scale, scale, size), 1)
        y_true[rng.random(size) < 0.15] = 0.0
        near = y_true + rng.normal(0, scale / 3, size)
        yield np.round(near * 2) / 2 * 1.3, y_true  # out of range values and .5 ties
        yield np.round(near, 1), y_true
        yield np.full(size, 0.5 * scale), y_true  # all one class: sklearn's undefined F1


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", [0, 1])
def test_mosi_matches_mmsa_reference(seed):
    for y_pred, y_true in _random_cases(3.0, seed):
        expected = _mmsa_eval_mosei_regression(y_pred, y_true)
        actual = metrics.mosi_metrics(y_pred, y_true)
        np.testing.assert_equal(actual, {k: float(v) for k, v in expected.items()})


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", [0, 1])
def test_sims_matches_mmsa_reference(seed):
    for y_pred, y_true in _random_cases(1.0, seed):
        expected = _mmsa_eval_sims_regression(y_pred, y_true)
        actual = metrics.sims_metrics(y_pred, y_true)
        np.testing.assert_equal(actual, {k: float(v) for k, v in expected.items()})


def _read_csv(relative):
    with open(real_data_file(relative), newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_real_simsv2_predictions_match_mmsa_reference():
    # CH-SIMS v2 test split with a published model's unimodal predictions (spp72kimo/chsims_v2).
    rows = _read_csv("simsv2/original/spp72kimo_chsims_v2__fusion_Video_videoMAE_with_labels.csv")
    test_rows = [r for r in rows if r["mode"] == "test"]
    assert len(test_rows) == 1034
    for column in ("pred_t", "pred_a", "pred_v"):  # pred_v is empty for 4 faceless clips
        scored = [r for r in test_rows if r[column]]
        y_true = np.asarray([float(r["y_true"]) for r in scored])
        y_pred = np.asarray([float(r[column]) for r in scored])
        expected = {k: float(v) for k, v in _mmsa_eval_sims_regression(y_pred, y_true).items()}
        assert metrics.sims_metrics(y_pred, y_true) == expected


def test_real_mosi_labels_match_mmsa_reference():
    rows = _read_csv("mosi/mosi_label_mmsa_format_DERIVED.csv")
    y_true = np.asarray([float(r["label"]) for r in rows if r["mode"] == "test"])
    assert len(y_true) == 686
    rng = np.random.default_rng(7)
    y_pred = y_true * 0.6 + rng.normal(0, 0.8, y_true.size)
    expected = {k: float(v) for k, v in _mmsa_eval_mosei_regression(y_pred, y_true).items()}
    assert metrics.mosi_metrics(y_pred, y_true) == expected
