"""Regression-mode sentiment metrics, computed exactly as MMSA computes them.

Published MOSI/MOSEI/SIMS numbers (the paper's Tables 1-3 and its baselines) come from
thuiar/MMSA's `MetricsTop` (`src/MMSA/utils/metricsTop.py`, regression mode). Reproducing
its arithmetic, not just its definitions, is what makes our numbers comparable:

* Inputs are flattened float32 arrays, as MMSA gets them from float32 torch tensors, so
  clipping, class edges and the MAE mean happen in float32 like there.
* MOSI and MOSEI share one function (MMSA's MOSEI metrics add nothing).
  MAE and Corr use the raw predictions; Mult_acc_7 / Mult_acc_5 compare
  `np.round` (half to even) of predictions and labels clipped to ±3 / ±2;
  Has0_* binarise all samples with `>= 0`; Non0_* keep samples whose label is not 0
  and binarise with `> 0`. F1 is sklearn's weighted F1.
* SIMS clips predictions and labels to [-1, 1] first (so MAE and Corr are on clipped
  values), then bins into classes with left-open, right-closed intervals
  (0 is negative in the 2-class split).
* Every value is rounded with Python's `round(value, 4)` applied to the very object
  MMSA rounds (a Python float from sklearn, a NumPy float64 elsewhere); pass
  `decimals=None` for the unrounded values.

Where MMSA has no answer we decide:
* Constant predictions give `Corr = nan` (MMSA's `np.corrcoef` does the same, with a
  warning that is easy to miss). We return nan quietly; training must call
  `is_degenerate` / `degenerate_reason` and say so loudly.
* If every label is 0, MMSA's Non0 code crashes; we return nan for the Non0 keys.
* NaN/inf in predictions or labels, empty or mismatched arrays raise `ValueError`
  (MMSA would silently count NaN predictions as negative).
"""

import math

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

FAMILIES = ("mosi", "mosei", "sims")

MOSI_KEYS = (
    "Has0_acc_2",
    "Has0_F1_score",
    "Non0_acc_2",
    "Non0_F1_score",
    "Mult_acc_5",
    "Mult_acc_7",
    "MAE",
    "Corr",
)
SIMS_KEYS = ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr")

# The paper's columns (ACC, F1, MAE, Corr) -> the MMSA key they report, per label family.
HEADLINE_KEYS = {
    "mosi": {"ACC": "Non0_acc_2", "F1": "Non0_F1_score", "MAE": "MAE", "Corr": "Corr"},
    "mosei": {"ACC": "Non0_acc_2", "F1": "Non0_F1_score", "MAE": "MAE", "Corr": "Corr"},
    "sims": {"ACC": "Mult_acc_2", "F1": "F1_score", "MAE": "MAE", "Corr": "Corr"},
}

# SIMS class edges: class i holds values v with edges[i] < v <= edges[i + 1].
SIMS_EDGES = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def _as_flat_float32(values, name):
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{name} is empty: metrics need at least one sample.")
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise ValueError(
            f"{name} has {bad} non-finite value(s) of {array.size}: metrics would be "
            "meaningless. Check the model output with midg_keras.metrics.degenerate_reason."
        )
    return array


def _checked_pair(y_pred, y_true):
    y_pred = _as_flat_float32(y_pred, "y_pred")
    y_true = _as_flat_float32(y_true, "y_true")
    if y_pred.shape != y_true.shape:
        raise ValueError(
            f"y_pred has {y_pred.size} values but y_true has {y_true.size}: "
            "they must hold one prediction per label."
        )
    return y_pred, y_true


def _rounded(results, decimals):
    """MMSA's `round(value, 4)` on each value as computed, returned as Python floats."""
    if decimals is None:
        return {key: float(value) for key, value in results.items()}
    return {key: float(round(value, decimals)) for key, value in results.items()}


def _multiclass_acc(y_pred, y_true):
    """Share of samples whose rounded (half to even) prediction equals the rounded label."""
    return np.sum(np.round(y_pred) == np.round(y_true)) / float(len(y_true))


def _pearson(y_pred, y_true):
    """Pearson correlation as `np.corrcoef`; nan (no warning) when either side is constant."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(y_pred, y_true)[0][1]


def _binary_scores(pred_positive, true_positive):
    accuracy = accuracy_score(pred_positive, true_positive)
    # zero_division=0.0 is sklearn's default ("warn" acts as 0) minus the warning.
    f1 = f1_score(true_positive, pred_positive, average="weighted", zero_division=0.0)
    return accuracy, f1


def mosi_metrics(y_pred, y_true, decimals=4):
    """MMSA's MOSI/MOSEI regression metrics on the native [-3, 3] scale.

    Args:
        y_pred: predictions, any shape, flattened.
        y_true: labels, same number of values.
        decimals: MMSA rounds every value to 4 decimals; None keeps the raw floats.

    Returns:
        dict with the keys of `MOSI_KEYS`, accuracies and F1 as fractions in [0, 1].

    Example:
        >>> mosi_metrics([2.4, -0.3], [2.0, 0.5])["Non0_acc_2"]
        0.5
    """
    y_pred, y_true = _checked_pair(y_pred, y_true)
    has0_acc, has0_f1 = _binary_scores(y_pred >= 0, y_true >= 0)
    non_zero = y_true != 0
    if np.any(non_zero):
        non0_acc, non0_f1 = _binary_scores(y_pred[non_zero] > 0, y_true[non_zero] > 0)
    else:
        non0_acc = non0_f1 = math.nan
    results = {
        "Has0_acc_2": has0_acc,
        "Has0_F1_score": has0_f1,
        "Non0_acc_2": non0_acc,
        "Non0_F1_score": non0_f1,
        "Mult_acc_5": _multiclass_acc(np.clip(y_pred, -2.0, 2.0), np.clip(y_true, -2.0, 2.0)),
        "Mult_acc_7": _multiclass_acc(np.clip(y_pred, -3.0, 3.0), np.clip(y_true, -3.0, 3.0)),
        "MAE": np.mean(np.absolute(y_pred - y_true)).astype(np.float64),
        "Corr": _pearson(y_pred, y_true),
    }
    return _rounded(results, decimals)


def sims_classes(values, num_classes):
    """Class index of each clipped SIMS value (edges in `SIMS_EDGES`, right-closed).

    The edges are cast to the values' dtype, as MMSA's comparisons of a float32 array with
    Python floats are, so a label of exactly 0.1 stays neutral.
    """
    edges = np.asarray(SIMS_EDGES[num_classes], dtype=values.dtype)
    return np.searchsorted(edges, values, side="left") - 1


def sims_metrics(y_pred, y_true, decimals=4):
    """MMSA's SIMS regression metrics on the native [-1, 1] scale.

    Args:
        y_pred: predictions, any shape, flattened; clipped to [-1, 1].
        y_true: labels, same number of values; clipped to [-1, 1].
        decimals: MMSA rounds every value to 4 decimals; None keeps the raw floats.

    Returns:
        dict with the keys of `SIMS_KEYS`; MAE and Corr are computed after clipping.

    Example:
        >>> sims_metrics([0.0, 0.5], [-0.4, 0.5])["Mult_acc_2"]  # 0 counts as negative
        1.0
    """
    y_pred, y_true = _checked_pair(y_pred, y_true)
    y_pred = np.clip(y_pred, -1.0, 1.0)
    y_true = np.clip(y_true, -1.0, 1.0)
    pred_2, true_2 = sims_classes(y_pred, 2), sims_classes(y_true, 2)
    results = {
        "Mult_acc_2": _multiclass_acc(pred_2, true_2),
        "Mult_acc_3": _multiclass_acc(sims_classes(y_pred, 3), sims_classes(y_true, 3)),
        "Mult_acc_5": _multiclass_acc(sims_classes(y_pred, 5), sims_classes(y_true, 5)),
        "F1_score": f1_score(true_2, pred_2, average="weighted", zero_division=0.0),
        "MAE": np.mean(np.absolute(y_pred - y_true)).astype(np.float64),
        "Corr": _pearson(y_pred, y_true),
    }
    return _rounded(results, decimals)


def _check_family(family):
    if family not in FAMILIES:
        raise ValueError(f"Unknown label family {family!r}: choose one of {', '.join(FAMILIES)}.")
    return family


def metrics_for_family(family):
    """The metric function of a label family ("mosi", "mosei" or "sims")."""
    return sims_metrics if _check_family(family) == "sims" else mosi_metrics


def metric_keys(family):
    """Every key the family's metric function returns, in MMSA's order."""
    return SIMS_KEYS if _check_family(family) == "sims" else MOSI_KEYS


def headline(metrics, family):
    """The paper's four columns {"ACC", "F1", "MAE", "Corr"} picked from a metrics dict."""
    return {column: metrics[key] for column, key in HEADLINE_KEYS[_check_family(family)].items()}


def degenerate_reason(y_pred, atol=1e-6):
    """Why predictions cannot be scored meaningfully, or None when they can.

    A model that collapsed to one value gets Corr = nan and accuracies that only echo the
    label balance; NaN/inf means training diverged. Both must be reported, not averaged.

    Args:
        y_pred: predictions, any shape.
        atol: predictions whose max - min is at most this count as constant.
    """
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if y_pred.size == 0:
        return "there are no predictions"
    bad = int(np.count_nonzero(~np.isfinite(y_pred)))
    if bad:
        return f"{bad} of {y_pred.size} predictions are NaN or infinite (training diverged?)"
    spread = float(np.ptp(y_pred))
    if spread <= atol:
        return (
            f"all {y_pred.size} predictions are constant ({float(y_pred[0]):.6g}, spread "
            f"{spread:.3g} <= {atol:g}): Corr is undefined and accuracies only reflect the "
            "label balance (the model collapsed; check learning rate, loss weights, data)"
        )
    return None


def is_degenerate(y_pred, atol=1e-6):
    """True when predictions are empty, non-finite or (near-)constant; see `degenerate_reason`."""
    return degenerate_reason(y_pred, atol) is not None
