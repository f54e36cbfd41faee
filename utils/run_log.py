"""Per-epoch metrics written beside a run as CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import os
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a kill leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
