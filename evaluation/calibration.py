"""How far predicted probabilities are from observed frequencies, and a temperature that
brings them closer.

Expected calibration error (Guo et al., 2017, "On Calibration of Modern Neural Networks"):
predictions are put in ``bins`` equal-width bins of confidence (the top probability), and
ECE is the sample-weighted mean of |accuracy - mean confidence| over the bins. Temperature
scaling divides the logits by one scalar T > 0 fitted to minimise the negative log-likelihood
on the validation split; it changes confidences, never the predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from utils.checkpoint import save_checkpoint
from utils.errors import UserError

ECE_BINS = 15


@dataclass
class ReliabilityBins:
    """Per bin of confidence: the samples it holds, their accuracy and mean confidence."""

    edges: Tensor  # (bins + 1,)
    counts: Tensor  # (bins,)
    accuracy: Tensor  # (bins,) 0 where a bin is empty
    confidence: Tensor  # (bins,)


def reliability_bins(
    probabilities: Tensor, labels: Tensor, bins: int = ECE_BINS
) -> ReliabilityBins:
    """Bins (lo, hi] of the top probability, the first one closed at 0."""
    confidence, predicted = probabilities.max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence.double(), edges[1:-1], right=False)  # 0 .. bins-1
    counts = torch.bincount(index, minlength=bins).double()
    sums = torch.bincount(index, weights=correct, minlength=bins)
    conf_sums = torch.bincount(index, weights=confidence.double(), minlength=bins)
    nonzero = counts.clamp_min(1)
    return ReliabilityBins(edges, counts, sums / nonzero, conf_sums / nonzero)


def expected_calibration_error(
    probabilities: Tensor, labels: Tensor, bins: int = ECE_BINS
) -> float:
    """Sum over bins of (samples in bin / all) * |accuracy - mean confidence|."""
    binned = reliability_bins(probabilities, labels, bins)
    gaps = (binned.accuracy - binned.confidence).abs()
    return float((binned.counts / binned.counts.sum() * gaps).sum())


def fit_temperature(logits: Tensor, labels: Tensor) -> float:
    """The T > 0 minimising the mean cross-entropy of ``logits / T`` (LBFGS on log T)."""
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    logits = logits.double()
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def calibration_summary(logits: Tensor, labels: Tensor, temperature: float) -> dict[str, float]:
    """ECE and NLL of ``logits`` before and after dividing by ``temperature``."""
    scaled = logits / temperature
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(logits.softmax(1), labels),
        "ece_after": expected_calibration_error(scaled.softmax(1), labels),
        "nll_before": float(F.cross_entropy(logits, labels)),
        "nll_after": float(F.cross_entropy(scaled, labels)),
    }


def calibrate_checkpoint(
    checkpoint: dict[str, Any], path: Path, logits: Tensor, labels: Tensor, split: str
) -> dict[str, Any]:
    """Fit a temperature to ``logits`` (already divided by the checkpoint's own, if any) and
    write a copy of the checkpoint holding the product, ``<name>-calibrated.pt``, which
    evaluation, ``predict.py`` and ``export.py`` then apply. Validation split only: a
    temperature chosen on the test split would make its scores optimistic."""
    if split != "val":
        raise UserError(
            f"--calibrate fits the temperature on the validation split, not {split!r}; run it "
            "with --split val, then score the calibrated copy on any split"
        )
    fitted = fit_temperature(logits, labels)
    summary = calibration_summary(logits, labels, fitted)
    summary["temperature"] = fitted * checkpoint.get("temperature", 1.0)
    copy = path.with_name(f"{path.stem.removesuffix('-calibrated')}-calibrated.pt")
    save_checkpoint({**checkpoint, "temperature": summary["temperature"]}, copy)
    summary["checkpoint"] = str(copy)
    return summary
