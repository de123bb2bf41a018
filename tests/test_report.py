"""Seed aggregation, paper-layout Markdown tables and the predictions CSV."""

import numpy as np
import pytest

from midg_keras import metrics
from midg_keras.training import report


def _mosi_result(acc, f1, mae, corr):
    return {
        "Has0_acc_2": 0.7,
        "Has0_F1_score": 0.69,
        "Non0_acc_2": acc,
        "Non0_F1_score": f1,
        "Mult_acc_5": 0.4,
        "Mult_acc_7": 0.35,
        "MAE": mae,
        "Corr": corr,
    }


def test_aggregate_seeds_uses_population_std():
    aggregated = report.aggregate_seeds([{"a": 1.0, "b": 0.5}, {"a": 3.0, "b": 0.5}])
    # mean 2; population std sqrt(((1-2)^2 + (3-2)^2) / 2) = 1 (sample std would be 1.414).
    assert aggregated == {"a": (2.0, 1.0), "b": (0.5, 0.0)}


def test_aggregate_seeds_rejects_mixed_families_and_nothing():
    with pytest.raises(ValueError, match="Seed #1"):
        report.aggregate_seeds([{"MAE": 1.0}, {"MAE": 1.0, "Corr": 0.2}])
    with pytest.raises(ValueError, match="at least one seed"):
        report.aggregate_seeds([])


def test_single_seed_table_in_paper_units():
    table = report.results_markdown(
        {"MIDG": _mosi_result(0.8397, 0.8395, 0.6869, 0.5123)},
        "mosei",
        source="mosi/unaligned_50",
        target="mosei/unaligned_50",
        seeds=[1111],
    )
    lines = table.splitlines()
    assert lines[0].startswith("Table: mosi/unaligned_50 → mosei/unaligned_50 (domain")
    assert "ACC = Non0_acc_2" in lines[0] and "seeds 1111" in lines[0]
    assert lines[1] == ""
    assert lines[2] == "| Model | ACC | F1 | MAE | Corr |"
    assert lines[3] == "|---|---:|---:|---:|---:|"
    assert lines[4] == "| MIDG | 83.97 | 83.95 | 0.6869 | 0.512 |"
    assert table.endswith("|\n") and len(lines) == 5


def test_several_seeds_give_mean_plus_minus_std_per_model():
    midg = [_mosi_result(0.80, 0.80, 0.70, 0.5), _mosi_result(0.82, 0.80, 0.72, 0.6)]
    erm = [_mosi_result(0.70, 0.69, 0.90, float("nan")), _mosi_result(0.70, 0.71, 0.90, 0.1)]
    table = report.results_markdown(
        {"MIDG": midg, "ERM": erm}, "mosi", source="mosi/unaligned_50", seeds=[1111, 1112]
    )
    lines = table.splitlines()
    assert "mosi/unaligned_50 (in-domain)" in lines[0]
    assert "seeds 1111, 1112: mean ± std (population std, ddof=0" in lines[0]
    # ACC (0.80, 0.82): 81.00 ± 1.00; MAE (0.70, 0.72): 0.7100 ± 0.0100; Corr: 0.550 ± 0.050.
    expected = "| MIDG | 81.00 ± 1.00 | 80.00 ± 0.00 | 0.7100 ± 0.0100 | 0.550 ± 0.050 |"
    assert lines[4] == expected
    assert lines[5] == "| ERM | 70.00 ± 0.00 | 70.00 ± 1.00 | 0.9000 ± 0.0000 | nan |"


def test_sims_target_uses_sims_columns_and_full_table_lists_every_key():
    y_pred, y_true = [0.3, -0.2, 0.9, 0.0], [0.4, -0.6, 0.8, 0.2]
    result = metrics.sims_metrics(y_pred, y_true)
    table = report.results_markdown(
        {"MIDG": result}, "sims", source="mosi/unaligned_50", target="sims/unaligned_39"
    )
    assert "ACC = Mult_acc_2, F1 = F1_score" in table and "1 seed." in table
    # Mult_acc_2: classes pred [1, 0, 1, 0] vs truth [1, 0, 1, 1] -> 0.75.
    assert table.splitlines()[4].startswith("| MIDG | 75.00 |")
    full = report.results_markdown(
        {"MIDG": result}, "sims", source="mosi/unaligned_50", target="sims/unaligned_39", full=True
    )
    assert full.splitlines()[2] == "| Model | " + " | ".join(metrics.SIMS_KEYS) + " |"


def test_targets_table_has_one_column_group_per_target_in_its_family():
    sims = metrics.sims_metrics([0.3, -0.2, 0.9, 0.0], [0.4, -0.6, 0.8, 0.2])
    seeds = [
        {"mosei": _mosi_result(0.80, 0.79, 0.70, 0.5), "sims": sims},
        {"mosei": _mosi_result(0.82, 0.81, 0.72, 0.6), "sims": sims},
    ]
    rows = {"MIDG": seeds, "ERM": seeds}
    table = report.targets_markdown(
        rows, {"mosei": "mosei", "sims": "sims"}, source="mosi", seeds=[1, 2]
    )
    lines = table.splitlines()
    assert (
        "trained on mosi" in lines[0] and "sims: SIMS-family metrics, ACC = Mult_acc_2" in lines[0]
    )
    assert lines[2] == (
        "| Model | mosei ACC | mosei F1 | mosei MAE | mosei Corr "
        "| sims ACC | sims F1 | sims MAE | sims Corr |"
    )
    assert lines[4].startswith("| MIDG | 81.00 ± 1.00 | 80.00 ± 1.00 | 0.7100 ± 0.0100 |")
    assert "| 0.550 ± 0.050 | 75.00 ± 0.00 |" in lines[4]  # sims ACC after mosei Corr
    assert len(lines[4].split(" | ")) == 9 and lines[5].startswith("| ERM |")
    one = report.targets_markdown(
        {"MIDG": [{"sims": sims}]}, {"sims": "sims"}, source="mosi", seeds=[1]
    )
    assert one == report.results_markdown(
        {"MIDG": sims}, "sims", source="mosi", target="sims", seeds=[1]
    )


def test_table_rejects_wrong_family_and_seed_count():
    sims_result = metrics.sims_metrics([0.3, -0.2], [0.4, -0.6])
    with pytest.raises(ValueError, match="not of the 'mosi' family"):
        report.results_markdown({"MIDG": sims_result}, "mosi", source="mosi")
    with pytest.raises(ValueError, match="2 seeds"):
        report.results_markdown(
            {"MIDG": [_mosi_result(0.8, 0.8, 0.7, 0.5)]}, "mosi", source="mosi", seeds=[1, 2]
        )


def test_predictions_csv_round_trips_float32_exactly(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.uniform(-3, 3, 50).astype(np.float32)
    predictions = rng.normal(0, 2, 50).astype(np.float32)
    ids = [f"vid{i},x$_${i}" for i in range(50)]  # a comma forces CSV quoting
    path = tmp_path / "sub" / "predictions.csv"
    report.write_predictions_csv(path, ids, labels, predictions)
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[0] == "id,label,prediction" and len(text) == 51
    back = report.read_predictions_csv(path)
    assert back.ids == ids
    np.testing.assert_array_equal(back.labels, labels)
    np.testing.assert_array_equal(back.predictions, predictions)


def test_predictions_csv_rejects_mismatched_lengths_and_foreign_files(tmp_path):
    with pytest.raises(ValueError, match="2 ids, 1 labels and 2 predictions"):
        report.write_predictions_csv(tmp_path / "p.csv", ["a", "b"], [1.0], [1.0, 2.0])
    other = tmp_path / "other.csv"
    other.write_text("video,score\na,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected id,label,prediction"):
        report.read_predictions_csv(other)
