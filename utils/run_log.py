"""Per-epoch metrics written beside a run as CSV and JSON, and where a run keeps its evaluations.

Written with ``write_text_atomic`` (``utils/safe_write.py``): a kill leaves the old file or the
new one, and a failed write (a full disk) keeps the old one and is one ``WriteError``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from utils.safe_write import write_text_atomic

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

EVAL_SPLITS = ("val", "test", "train")
TTA_MODES = ("none", "flip", "flip-shift")  # evaluation/inference.py's views of an image


def eval_folder(split: str, tta: str = "none") -> str:
    """The folder of a run directory that one evaluation writes: ``eval-test`` for the test
    split as trained, ``eval-test-flip-shift`` with that test-time augmentation, so scoring a
    split both ways keeps both."""
    return f"eval-{split}" if tta == "none" else f"eval-{split}-{tta}"


def write_history(history: list[dict[str, Any]], run_dir: Path) -> None:
    """Rewrite ``metrics.csv`` and ``metrics.json`` from the whole history (resume-safe)."""
    rows = io.StringIO(newline="")
    writer = csv.DictWriter(rows, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text_atomic(run_dir / "metrics.csv", rows.getvalue())
    write_text_atomic(run_dir / "metrics.json", json.dumps(history, indent=2) + "\n")


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch rows of a run, as written by ``write_history``."""
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else []
