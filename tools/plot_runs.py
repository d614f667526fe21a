"""Validation accuracy against wall-clock seconds of several training runs, in one PNG.

    python tools/plot_runs.py runs/old/log.csv:"old default" runs/new/log.csv:"new default" -o docs/runs.png

Each argument is a run's ``log.csv`` (written by ``examples/train_captcha.py``),
optionally followed by ``:LABEL``; the points are its evaluation rows
(validation exact match, greedy) at the seconds the run had taken. The PNG is
written atomically.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def read_points(path: Path) -> Tuple[List[float], List[float]]:
    """(seconds, accuracy in %) of the rows of a log.csv that hold an evaluation."""
    seconds, accuracy = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("accuracy"):
                seconds.append(float(row["seconds"]))
                accuracy.append(100 * float(row["accuracy"]))
    if not seconds:
        raise SystemExit(f"{path}: no evaluation rows (column 'accuracy' empty everywhere)")
    return seconds, accuracy


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="LOG.csv[:LABEL]")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")
    parser.add_argument("--title", default="validation exact match against wall-clock time")
    parser.add_argument("--ymin", type=float, default=95.0, help="lowest accuracy shown, %%")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ctcx.captcha.checkpoint import atomic_write

    figure, axis = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    for spec in args.runs:
        path, _, label = spec.partition(":")
        seconds, accuracy = read_points(Path(path))
        axis.plot([s / 60 for s in seconds], accuracy, marker="o", label=label or path)
        axis.annotate(f"{accuracy[-1]:.2f}%", (seconds[-1] / 60, accuracy[-1]), textcoords="offset points",
                      xytext=(4, -12), fontsize=8)
    axis.set(xlabel="minutes since the run started (pool drawing included)", ylabel="validation exact match (%)",
             title=args.title, ylim=(args.ymin, 100))
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
