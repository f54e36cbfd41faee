"""PNG plots of a run and of its evaluation (matplotlib, headless)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from torch import Tensor

from evaluation.calibration import ReliabilityBins
from utils.safe_write import atomic_write


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (``utils/safe_write.py``) and close it."""
    atomic_write(path, lambda file: fig.savefig(file, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def plot_training_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss and accuracy per epoch, train against validation, with the best epoch marked."""
    epochs = [row["epoch"] for row in history]
    best = min(history, key=lambda row: row["val_loss"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, title in ((ax_loss, "loss", "Loss"), (ax_acc, "acc", "Accuracy")):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], "o-", ms=3, label="train")
        ax.plot(
            epochs,
            [row[f"val_{key}"] for row in history],
            "o-",
            ms=3,
            label="validation",
        )
        ax.axvline(
            best["epoch"],
            color="grey",
            ls="--",
            lw=1,
            label=f"best (epoch {best['epoch']})",
        )
        ax.set(xlabel="epoch", ylabel=title.lower(), title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def plot_confusion_matrix(cm: list[list[int]], class_names: list[str], path: Path) -> Path:
    """Heatmap of row-normalised counts (recall), annotated with the raw counts."""
    n = len(class_names)
    side = max(5.0, 0.55 * n + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    totals = [max(1, sum(row)) for row in cm]
    rates = [[count / total for count in row] for row, total in zip(cm, totals, strict=True)]
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if n <= 30:
        ticks = range(n)
        ax.set_xticks(ticks, class_names, rotation=45, ha="right")
        ax.set_yticks(ticks, class_names)
        for i in range(n):
            for j in range(n):
                color = "white" if rates[i][j] > 0.5 else "black"
                ax.text(j, i, cm[i][j], ha="center", va="center", fontsize=8, color=color)
    ax.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix")
    return save_figure(fig, path)


def plot_per_class_accuracy(per_class: dict[str, dict[str, float]], path: Path) -> Path:
    """Horizontal bars of per-class accuracy, worst class at the top."""
    items = sorted(per_class.items(), key=lambda item: item[1]["accuracy"])
    names = [name for name, _ in items]
    values = [stats["accuracy"] for _, stats in items]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.35 * len(names) + 1)))
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], padding=3, fontsize=8)
    ax.set(xlim=(0, 1.12), xlabel="accuracy", title="Per-class accuracy")
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_misclassified(
    images: Tensor,
    true: list[int],
    predicted: list[int],
    confidence: list[float],
    class_names: list[str],
    path: Path,
) -> Path:
    """A grid of misclassified images (uint8, (N, 3, H, W)) titled true / predicted (prob)."""
    count = len(true)
    cols = min(6, max(1, count))
    rows = max(1, math.ceil(count / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, t, p, c in zip(axes.flat, images, true, predicted, confidence, strict=False):
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(f"true: {class_names[t]}\npred: {class_names[p]} ({c:.0%})", fontsize=8)
    if count == 0:
        axes.flat[0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    fig.suptitle("Most confident mistakes")
    return save_figure(fig, path)


def plot_reliability_diagram(bins: ReliabilityBins, ece: float, path: Path) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, and
    how many predictions each bin holds (below)."""
    edges = bins.edges.tolist()
    centres = [(lo + hi) / 2 for lo, hi in itertools.pairwise(edges)]
    width = edges[1] - edges[0]
    filled = bins.counts > 0
    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.bar(
        [c for c, f in zip(centres, filled.tolist(), strict=True) if f],
        bins.accuracy[filled].tolist(),
        width=width * 0.95,
        color="tab:blue",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.plot(
        bins.confidence[filled].tolist(),
        bins.accuracy[filled].tolist(),
        "o",
        color="tab:red",
        ms=3,
        label="mean confidence",
    )
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=f"Reliability (ECE {ece:.4f})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax_count.bar(centres, bins.counts.tolist(), width=width * 0.95, color="tab:grey")
    ax_count.set(xlabel="confidence (top probability)", ylabel="images", yscale="log")
    return save_figure(fig, path)
