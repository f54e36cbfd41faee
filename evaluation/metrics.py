"""Classification metrics computed from logits and labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from evaluation.calibration import expected_calibration_error


def confusion_matrix(predicted: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) counts; row = true class, column = predicted class."""
    flat = labels * num_classes + predicted
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def _safe_divide(num: Tensor, den: Tensor) -> Tensor:
    """num / den, and 0 where den is 0 (a class never predicted, or never present)."""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), 0.0)


def classification_metrics(
    logits: Tensor, labels: Tensor, class_names: list[str]
) -> dict[str, Any]:
    """Accuracy, loss, top-5, expected calibration error (``ECE_BINS`` bins), per-class
    accuracy/precision/recall/F1 and the confusion matrix.

    logits: (N, C) float; labels: (N,) int64.
    """
    num_classes = logits.shape[1]
    predicted = logits.argmax(1)
    cm = confusion_matrix(predicted, labels, num_classes).double()
    true_pos = cm.diagonal()
    recall = _safe_divide(true_pos, cm.sum(1))  # per-class accuracy
    precision = _safe_divide(true_pos, cm.sum(0))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    k = min(5, num_classes)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(1).double().mean()
    per_class = {
        name: {
            "accuracy": recall[i].item(),
            "precision": precision[i].item(),
            "recall": recall[i].item(),
            "f1": f1[i].item(),
            "support": int(cm[i].sum()),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "num_samples": len(labels),
        "accuracy": (predicted == labels).double().mean().item(),
        "loss": F.cross_entropy(logits, labels).item(),
        "top5_accuracy": top5.item(),  # top-k with k = min(5, classes)
        "ece": expected_calibration_error(logits.softmax(1), labels),  # ECE_BINS bins
        "macro_precision": precision.mean().item(),
        "macro_recall": recall.mean().item(),
        "macro_f1": f1.mean().item(),
        "per_class": per_class,
        "confusion_matrix": cm.long().tolist(),
    }
