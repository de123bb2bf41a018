"""Plots written into a run's workdir, so a run can be judged without opening TensorBoard.

`plots/curves.png`: every loss term of `history.csv` (train solid, source validation
dashed) and the native-scale validation metrics of `ValidationMetrics`, per epoch.
`plots/test_scatter.png`: predicted vs true sentiment on each target's test split.
matplotlib is imported inside the functions (Agg canvas, no display, no pyplot state), so
importing the library stays light.
"""

import csv
import math
import os

from midg_keras.training import report

PLOTS_DIR = "plots"
CURVES_FILE = "curves.png"
SCATTER_FILE = "test_scatter.png"


def write_run_plots(workdir, predictions):
    """Writes `plots/curves.png` (when `history.csv` exists) and `plots/test_scatter.png`.

    Args:
        workdir: the run's folder.
        predictions: {target name: path of its `write_predictions_csv` file}, one panel each.

    Returns:
        the paths written.
    """
    folder = os.path.join(workdir, PLOTS_DIR)
    os.makedirs(folder, exist_ok=True)
    written = []
    history = os.path.join(workdir, "history.csv")
    if os.path.exists(history) and _read_history(history):
        written.append(plot_curves(history, os.path.join(folder, CURVES_FILE)))
    written.append(plot_test_scatter(predictions, os.path.join(folder, SCATTER_FILE)))
    return written


def plot_curves(history_path, path):
    """Loss terms in one panel, every other logged quantity in a panel of its own.

    Training values are solid, source-validation ones (`val_`) dashed in the same colour.
    """
    columns = _read_history(history_path)
    epochs = [int(e) + 1 for e in columns.pop("epoch")]
    names = sorted({name.removeprefix("val_") for name in columns})
    losses = [name for name in names if name.endswith("loss")]
    panels = [("loss terms", losses)] + [(name, [name]) for name in names if name not in losses]
    figure, canvas = _figure()
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    figure.set_size_inches(5 * len(axes), 4)
    for ax, (title, panel_names) in zip(axes, panels):
        for name in panel_names:
            color = None
            if name in columns:
                color = ax.plot(epochs, columns[name], marker=".", label=name)[0].get_color()
            if f"val_{name}" in columns:
                ax.plot(
                    epochs,
                    columns[f"val_{name}"],
                    "--",
                    marker=".",
                    color=color,
                    label=f"val_{name}",
                )
        ax.set(title=title, xlabel="epoch")
        ax.legend(fontsize="x-small")
    figure.suptitle("solid: training; dashed: source validation (val_MAE, val_*acc*: native scale)")
    figure.tight_layout()
    canvas.print_png(path)
    return path


def plot_test_scatter(predictions, path):
    """Predicted vs true sentiment, one panel per target, with the y = x diagonal."""
    figure, canvas = _figure()
    axes = figure.subplots(1, len(predictions), squeeze=False)[0]
    figure.set_size_inches(4.5 * len(axes), 4.5)
    for ax, (name, csv_path) in zip(axes, predictions.items()):
        values = report.read_predictions_csv(csv_path)
        ax.scatter(values.labels, values.predictions, s=8, alpha=0.5)
        bound = max(1.0, float(abs(values.labels).max()), float(abs(values.predictions).max()))
        ax.plot([-bound, bound], [-bound, bound], "k:", linewidth=1)
        ax.set(title=name, xlabel="true", ylabel="predicted", aspect="equal")
        ax.title.set_fontsize("small")
    figure.tight_layout()
    canvas.print_png(path)
    return path


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    return figure, FigureCanvasAgg(figure)


def _read_history(path):
    """history.csv as {column: [floats]} (empty cells are nan); {} without epochs."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {name: [float(row[name]) if row[name] else math.nan for row in rows] for name in rows[0]}
