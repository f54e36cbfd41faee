"""Per-epoch metrics written beside a run as CSV and JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "epoch_time_s",
    "images_per_s",
    "skipped_steps",
)


def write_history(history: list[dict[str, Any]], run_dir: Path) -> None:
    """Rewrite ``metrics.csv`` and ``metrics.json`` from the whole history (resume-safe)."""
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)
    (run_dir / "metrics.json").write_text(json.dumps(history, indent=2) + "\n")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a run, as written by ``write_history``."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else []
