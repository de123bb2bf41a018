"""Run reports: seed aggregation, paper-layout Markdown tables, per-sample predictions.

Seeds are aggregated as MMSA's `run.py` does (`MMSA_run`): the per-seed metrics (already
rounded to 4 decimals by the metric functions) are averaged with `np.mean` and spread with
`np.std`, i.e. the population std (ddof=0). MMSA then stores `round(x * 100, 2)` for every
key; we keep the raw mean/std and only format when printing, in the paper's units:
accuracies and F1 in percent with 2 decimals, MAE with 4 and Corr with 3 decimals.
"""

import collections
import csv
import io
import math
import os

import numpy as np

from midg_keras import metrics as metrics_lib
from midg_keras.training.workdir import atomic_write

_PREDICTIONS_HEADER = ("id", "label", "prediction")
# The paper's metric columns; `metrics.HEADLINE_KEYS` maps them to each family's MMSA keys.
PAPER_COLUMNS = ("ACC", "F1", "MAE", "Corr")

Predictions = collections.namedtuple("Predictions", ["ids", "labels", "predictions"])


def aggregate_seeds(results):
    """Mean and population std (ddof=0, as MMSA) of each metric over seeds.

    Args:
        results: one metrics dict per seed, all with the same keys.

    Returns:
        {key: (mean, std)} as Python floats, keys in the first dict's order.
    """
    results = list(results)
    if not results:
        raise ValueError("aggregate_seeds needs the metrics of at least one seed.")
    keys = list(results[0])
    for seed_index, result in enumerate(results[1:], start=1):
        if set(result) != set(keys):
            raise ValueError(
                f"Seed #{seed_index} has metric keys {sorted(result)} but seed #0 has "
                f"{sorted(keys)}: aggregate results of one metric family only."
            )
    aggregated = {}
    for key in keys:
        values = np.asarray([result[key] for result in results], dtype=np.float64)
        aggregated[key] = (float(np.mean(values)), float(np.std(values)))
    return aggregated


def _format_number(value, key):
    if math.isnan(value):
        return "nan"
    if key == "MAE":
        return f"{value:.4f}"
    if key == "Corr":
        return f"{value:.3f}"
    return f"{value * 100:.2f}"  # accuracies and F1 scores, in percent like the paper


def _format_cell(mean_std, key, several_seeds):
    mean, std = mean_std
    if not several_seeds or math.isnan(mean):
        return _format_number(mean, key)
    return f"{_format_number(mean, key)} ± {_format_number(std, key)}"


def _seed_text(seeds, num_seeds):
    """`seeds 1, 2: mean ± std (...)`, or the number of seeds when they are not given."""
    if seeds:
        text = f"seeds {', '.join(str(s) for s in seeds)}"
    else:
        text = f"{num_seeds} seed{'s' if num_seeds != 1 else ''}"
    if num_seeds > 1:
        text += ": mean ± std (population std, ddof=0, as MMSA)"
    return text


def _caption(family, source, target, seeds, num_seeds):
    if target and target != source:
        task = f"{source} → {target} (domain generalization: trained on source, tested on target)"
    else:
        task = f"{source} (in-domain)"
    seed_text = _seed_text(seeds, num_seeds)
    columns = metrics_lib.HEADLINE_KEYS[family]
    return (
        f"Table: {task}; {family.upper()}-family metrics, ACC = {columns['ACC']}, "
        f"F1 = {columns['F1']} (percent); {seed_text}."
    )


def results_markdown(rows, family, *, source, target="", seeds=None, full=False):
    """A Markdown results table in the layout of the paper's Tables 1 and 3.

    Args:
        rows: {model name: metrics dict or list of per-seed metrics dicts}, one table row
            per model in the mapping's order (e.g. {"MIDG": [...], "ERM": [...]}).
        family: label family of the data the metrics were computed on (the target's):
            "mosi", "mosei" or "sims".
        source: the training data, as given to --source.
        target: the test data, as given to --target; empty or equal to source = in-domain.
        seeds: the seeds behind each row; every row must have one result per seed.
        full: all MMSA keys as columns instead of the paper's ACC, F1, MAE, Corr.

    Returns:
        the caption line, a blank line and the table, ending with a newline.

    Example:
        results_markdown({"MIDG": [seed1, seed2], "ERM": [seed1, seed2]}, "mosei",
                         source="mosi/unaligned_50", target="mosei/unaligned_50",
                         seeds=[1111, 1112]) gives

        Table: mosi/unaligned_50 → mosei/unaligned_50 (domain generalization: ...); ...

        | Model | ACC | F1 | MAE | Corr |
        |---|---:|---:|---:|---:|
        | MIDG | 83.97 ± 0.41 | 83.95 ± 0.38 | 0.6869 ± 0.0102 | 0.512 ± 0.008 |
        | ERM | ... |
    """
    if full:
        columns = {key: key for key in metrics_lib.metric_keys(family)}
    else:
        columns = metrics_lib.HEADLINE_KEYS[family]
    cells, num_seeds = _table_cells(rows, family, columns, seeds)
    return _table(_caption(family, source, target, seeds, num_seeds), list(columns), cells)


def _table(caption, columns, cells):
    """A caption line, a blank line and a Markdown table: one row per model, numbers right."""
    lines = [
        caption,
        "",
        "| Model | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, row in cells.items():
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _table_cells(rows, family, columns, seeds):
    """({model name: formatted cells of `columns` (name -> key)}, most seeds of a row)."""
    if not rows:
        raise ValueError("results_markdown needs at least one row.")
    cells, num_seeds = {}, 0
    for name, results in rows.items():
        results = [results] if isinstance(results, dict) else list(results)
        if seeds and len(results) != len(seeds):
            raise ValueError(
                f"Row {name!r} has {len(results)} result(s) but {len(seeds)} seeds were given."
            )
        missing = [key for key in columns.values() if key not in results[0]]
        if missing:
            raise ValueError(
                f"Row {name!r} lacks {missing}: its metrics are not of the {family!r} family."
            )
        aggregated = aggregate_seeds(results)
        cells[name] = [
            _format_cell(aggregated[key], key, len(results) > 1) for key in columns.values()
        ]
        num_seeds = max(num_seeds, len(results))
    return cells, num_seeds


def targets_markdown(rows, targets, *, source, seeds=None):
    """The paper's Table 1 layout: one row per model, one column group per target.

    Each group holds ACC, F1, MAE and Corr in its target's own family's keys (SIMS:
    Mult_acc_2, F1_score), mean ± std over seeds. With one target this is
    `results_markdown` for it.

    Args:
        rows: {model name: [per-seed {target name: metrics dict}]}, one table row per
            model in the mapping's order.
        targets: {target name: label family}, one column group per target in this order.
        source: the training data, as given to --source.
        seeds: the seeds behind each row; every row must have one result per seed.

    Returns:
        the caption line, a blank line and the table, ending with a newline.
    """
    if len(targets) == 1:
        ((target, family),) = targets.items()
        return results_markdown(
            _rows_of_target(rows, target), family, source=source, target=target, seeds=seeds
        )
    cells = {name: [] for name in rows}
    for target, family in targets.items():
        target_cells, num_seeds = _table_cells(
            _rows_of_target(rows, target), family, metrics_lib.HEADLINE_KEYS[family], seeds
        )
        for name, row in target_cells.items():
            cells[name].extend(row)
    columns = [f"{target} {column}" for target in targets for column in PAPER_COLUMNS]
    return _table(_targets_caption(targets, source, seeds, num_seeds), columns, cells)


def _rows_of_target(rows, target):
    return {name: [result[target] for result in results] for name, results in rows.items()}


def _targets_caption(targets, source, seeds, num_seeds):
    families = {}
    for target, family in targets.items():
        families.setdefault(family, []).append(target)
    keys = "; ".join(
        f"{', '.join(names)}: {family.upper()}-family metrics, ACC = "
        f"{metrics_lib.HEADLINE_KEYS[family]['ACC']}, F1 = {metrics_lib.HEADLINE_KEYS[family]['F1']}"
        for family, names in families.items()
    )
    seed_text = _seed_text(seeds, num_seeds)
    return (
        f"Table: trained on {source}, model selected on its validation split, tested once on "
        f"each target (a target equal to the source is in-domain); {keys} (percent); "
        f"{seed_text}."
    )


def _as_float_vector(values):
    array = np.asarray(values).reshape(-1)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def write_predictions_csv(path, ids, labels, predictions):
    """Writes `id,label,prediction`, one row per sample, floats in shortest exact form.

    Values keep their dtype's shortest round-trip text (float32 stays float32-exact).
    The parent folder is created when missing; the file is replaced atomically.
    """
    ids = [str(i.decode() if isinstance(i, bytes) else i) for i in ids]
    labels = _as_float_vector(labels)
    predictions = _as_float_vector(predictions)
    if not len(ids) == labels.size == predictions.size:
        raise ValueError(
            f"write_predictions_csv({path!r}): {len(ids)} ids, {labels.size} labels and "
            f"{predictions.size} predictions; give one of each per sample."
        )
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(_PREDICTIONS_HEADER)
    for sample_id, label, prediction in zip(ids, labels, predictions):
        writer.writerow((sample_id, str(label), str(prediction)))
    atomic_write(os.fspath(path), text.getvalue())


def read_predictions_csv(path, dtype=np.float32):
    """Reads a `write_predictions_csv` file: `Predictions(ids, labels, predictions)`."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if tuple(header or ()) != _PREDICTIONS_HEADER:
            raise ValueError(
                f"{path}: header is {header}, expected {','.join(_PREDICTIONS_HEADER)}: "
                "not a predictions file written by write_predictions_csv."
            )
        ids, labels, predictions = [], [], []
        for line_number, row in enumerate(reader, start=2):
            if len(row) != 3:
                raise ValueError(f"{path}: line {line_number} has {len(row)} fields, expected 3.")
            ids.append(row[0])
            labels.append(float(row[1]))
            predictions.append(float(row[2]))
    return Predictions(ids, np.asarray(labels, dtype=dtype), np.asarray(predictions, dtype=dtype))
