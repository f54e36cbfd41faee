"""A finished run's records as a comparison reads them: config, summary, per-epoch metrics and
test-split scores.

A run scored on the test split (``evaluate.py --split test``, or the sweep's ``--evaluate
test``) has ``<run>/eval-test/metrics.json``, and ``eval-test-<tta>`` for each test-time
augmentation it was scored with. Only the kept ``best.pt`` (the epoch chosen on validation)
counts; a test score of any other checkpoint is an error.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from utils.errors import UserError
from utils.run_log import TTA_MODES, eval_folder, read_history

SUMMARY_KEYS = (
    "best_val_acc", "best_val_loss", "best_epoch", "epochs_run", "train_seconds", "hardware",
)  # fmt: skip
HISTORY_KEYS = ("epoch", "val_loss", "val_acc", "epoch_time_s")


@dataclass
class RunResult:
    run_dir: Path
    group: str
    seed: int
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    test: dict[str, dict[str, float]]  # TTA mode -> the test split's accuracy and loss

    @property
    def median_epoch_s(self) -> float:
        return statistics.median(row["epoch_time_s"] for row in self.history)


def load_run(run_dir: Path) -> RunResult:
    """A finished run's summary, per-epoch history and config; unreadable records stop with
    one line naming the run."""
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file() or not config_path.is_file():
        raise UserError(f"{run_dir} is not a finished run (no summary.json or config.yaml)")
    try:
        history = read_history(run_dir)
        config = yaml.safe_load(config_path.read_text())
        group, seed = config["name"], config["train"]["seed"]
        summary = json.loads(summary_path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError) as err:
        first_line = str(err).splitlines()[0]  # YAML errors go on to quote the text
        message = f"{run_dir}: its records cannot be read ({type(err).__name__}: {first_line})"
        raise UserError(message) from None
    if not history:
        raise UserError(f"{run_dir} has no per-epoch metrics (metrics.json missing or empty)")
    if missing := [key for key in SUMMARY_KEYS if key not in summary]:
        raise UserError(f"{run_dir}/summary.json lacks {', '.join(missing)}")
    if missing := sorted({key for row in history for key in HISTORY_KEYS if key not in row}):
        raise UserError(f"{run_dir}/metrics.json lacks {', '.join(missing)}")
    return RunResult(run_dir, group, seed, summary, history, test_scores(run_dir, summary))


def test_scores(run_dir: Path, summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The run's test-split accuracy and loss for each TTA mode it was scored with, checked to
    be those of its kept best epoch."""
    scores = {}
    for tta in TTA_MODES:
        path = run_dir / eval_folder("test", tta) / "metrics.json"
        if not path.is_file():
            continue
        try:
            metrics = json.loads(path.read_text())
            checkpoint = Path(metrics["checkpoint"])
            scored = (metrics["split"], scored_tta(metrics), checkpoint.name, metrics["epoch"])
            scores[tta] = {"acc": metrics["accuracy"], "loss": metrics["loss"]}
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} cannot be read ({type(err).__name__}: {err})") from None
        # the folder's name says what it holds; a rename, an --output-dir or an older
        # evaluate.py (which wrote every TTA mode into eval-test) could make it say otherwise
        kept = ("test", tta, "best.pt", summary["best_epoch"])
        if scored != kept or checkpoint.parent.name != run_dir.name:
            raise UserError(
                f"{path} scores the {scored[0]} split (TTA {scored[1]}) with {checkpoint} at "
                f"epoch {scored[3]}, not the test split (TTA {tta}) with this run's kept "
                f"best.pt of epoch {summary['best_epoch']}: score it with python evaluate.py "
                f"--ckpt {run_dir / 'best.pt'} --split test --tta {tta}"
            )
    return scores


def scored_tta(metrics: dict[str, Any]) -> str:
    """The TTA mode of an evaluation's metrics; older ones recorded only ``flip_tta``."""
    return metrics.get("tta", "flip" if metrics.get("flip_tta") else "none")
