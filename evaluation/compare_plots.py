"""The comparison's plots: validation curves of every run, and each run's val and test accuracy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from evaluation.plots import save_figure
from evaluation.run_records import RunResult

LINE_STYLES = ("-", "--", ":", "-.")
SCORE_MARKERS = {"none": "o", "flip": "^", "flip-shift": "s"}  # test scores, by TTA mode


def plot_overlay(runs: list[RunResult], key: str, ylabel: str, path: Path) -> Path:
    """``key`` (val_loss or val_acc) against epoch, every run on one figure: one colour per
    group, one line style per seed within it."""
    fig, ax = plt.subplots(figsize=(8, 5))
    groups = list(dict.fromkeys(run.group for run in runs))
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")
    seen_in_group: dict[str, int] = {}
    for run in runs:
        epochs = [row["epoch"] for row in run.history]
        values = [row[key] * (100 if key.endswith("acc") else 1) for row in run.history]
        nth = seen_in_group[run.group] = seen_in_group.get(run.group, -1) + 1
        style = LINE_STYLES[nth % len(LINE_STYLES)]
        colour = colours(groups.index(run.group) % colours.N)
        ax.plot(
            epochs, values, style, color=colour, marker="o", ms=2, lw=1.2, label=run.run_dir.name
        )
    ax.set(xlabel="epoch", ylabel=ylabel, title=f"{ylabel} by epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no ticks between epochs
    if key.endswith("loss"):  # an unstable first epoch can be 100x the rest
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path)


def plot_scores(runs: list[RunResult], path: Path) -> Path:
    """One column per group: each run's val accuracy (hollow) beside its test accuracy as
    trained and with each TTA it was scored with (filled), so the gap between the splits and
    the spread between seeds show at a glance."""
    groups = list(dict.fromkeys(run.group for run in runs))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 2), 5))
    labelled: set[str] = set()

    def point(x: float, y: float, label: str, **style: object) -> None:
        ax.plot([x], [y], ls="none", ms=7, label=None if label in labelled else label, **style)
        labelled.add(label)

    for run in runs:
        x = groups.index(run.group)
        point(
            x - 0.15, 100 * run.summary["best_val_acc"], "val", marker="o", mfc="none", color="C0"
        )
        for offset, (tta, marker) in enumerate(SCORE_MARKERS.items()):
            if tta in run.test:
                label = "test" if tta == "none" else f"test, {tta} TTA"
                point(
                    x + 0.1 * offset,
                    100 * run.test[tta]["acc"],
                    label,
                    marker=marker,
                    color=f"C{offset + 1}",
                )
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")
    ax.set(ylabel="accuracy (%)", title="val and test accuracy of each run (kept best.pt)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_accuracy_vs_compute(runs: list[RunResult], path: Path) -> Path:
    """Each run that recorded its training PFLOP as a point: its test accuracy as trained
    (filled) where it was scored on the test split, else its val accuracy (hollow); one colour
    per group, so recipes compare at equal compute."""
    groups = list(dict.fromkeys(run.group for run in runs))
    fig, ax = plt.subplots(figsize=(8, 5))
    labelled: set[str] = set()
    for run in runs:
        if "train_pflop" not in run.summary:
            continue
        colour = f"C{groups.index(run.group) % 10}"
        tested = "none" in run.test
        accuracy = run.test["none"]["acc"] if tested else run.summary["best_val_acc"]
        label = None if run.group in labelled else run.group
        labelled.add(run.group)
        fill = colour if tested else "none"
        point = ([run.summary["train_pflop"]], [100 * accuracy])
        ax.plot(*point, "o", ms=8, color=colour, mfc=fill, label=label)
    ax.set(
        xlabel="training compute (PFLOP, forward + backward)",
        ylabel="accuracy (%): test filled, val hollow",
        title="accuracy against training compute",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
