"""The run's curves on disk: ``log.csv`` (rewritten as the run goes) and ``curves.png`` (at the end)."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Sequence

from .checkpoint import atomic_write

__all__ = ["CSV_COLUMNS", "PLOT_MISSING", "can_plot", "write_csv", "plot_curves"]

PLOT_MISSING = ("curves.png skipped: matplotlib is not installed (an optional dependency: "
                "pip install matplotlib==3.11.2, or pip install '.[plots]'); log.csv has the same figures")
"""The one line a run logs instead of plotting when matplotlib is missing."""


def can_plot() -> bool:
    """True when matplotlib imports, so :func:`plot_curves` can run (checked before training starts)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True

CSV_COLUMNS = ("step", "seconds", "lr", "loss", "accuracy", "accuracy_ci", "cer")
"""Columns of ``log.csv``: loss is the smoothed training loss (mean CTC loss per
target character); accuracy, accuracy_ci (case-insensitive) and cer are the
validation scores of greedy decoding, filled on evaluation steps only."""


def write_csv(history: Sequence[Dict[str, float]], path: os.PathLike | str) -> Path:
    """Write ``history`` (one dict per logged step) as CSV, atomically."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(history)
    return atomic_write(path, write)


def plot_curves(history: Sequence[Dict[str, float]], path: os.PathLike | str, title: str = "") -> Path:
    """Plot training loss and validation accuracy against step into a PNG, atomically."""
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    def series(key: str) -> List[List[float]]:
        points = [(row["step"], row[key]) for row in history if row.get(key) not in (None, "")]
        return [list(p) for p in zip(*points)] or [[], []]

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    left.plot(*series("loss"), color="tab:blue")
    left.set(xlabel="step", ylabel="training loss (smoothed)", yscale="log", title="loss")
    for key, label in (("accuracy", "exact match"), ("accuracy_ci", "exact match, any case")):
        steps, values = series(key)
        right.plot(steps, [100 * v for v in values], marker="o", label=label)
    right.set(xlabel="step", ylabel="validation accuracy (%)", title="accuracy")
    right.legend(loc="lower right")
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    if title:
        figure.suptitle(title)

    def write(tmp: Path) -> None:
        figure.savefig(tmp, format="png", dpi=100)
    try:
        return atomic_write(path, write)
    finally:
        plt.close(figure)
