"""What a run reports: the row of metrics per epoch, its printed line, and ``summary.json``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.budget import TimeBudget
from training.distributed import Distributed
from training.loop import EpochStats
from training.run_state import RunState
from utils.device import FastPath
from utils.hardware import peak_rss_mib
from utils.run_log import write_text_atomic


def summed_over_ranks(dist: Distributed, stats: EpochStats) -> EpochStats:
    """Exact totals over all ranks: sums of losses and counts, not a mean of means."""
    loss_sum, correct, seen = dist.sum([stats.loss_sum, stats.correct, stats.seen])
    return EpochStats(loss_sum, round(correct), round(seen))


def epoch_row(
    dist: Distributed,
    scores: dict[str, EpochStats],
    *,
    state: RunState,
    lr: float,
    train_seconds: float,
    epoch_seconds: float,
) -> dict[str, Any]:
    """The metrics of the epoch ``state`` has just counted, summed over all ranks. ``scores``
    holds "train", "val" and optionally "raw_val" (the raw weights beside an average), each
    giving ``<name>_loss``/``_acc``."""
    totals = {name: summed_over_ranks(dist, stats) for name, stats in scores.items()}
    row: dict[str, Any] = {"epoch": state.epoch}
    for name in ("train", "val"):
        row |= {f"{name}_loss": totals[name].loss, f"{name}_acc": totals[name].accuracy}
    row |= {
        "lr": lr,
        "epoch_time_s": round(epoch_seconds, 2),
        "images_per_s": round(totals["train"].seen / train_seconds, 1),
        "skipped_steps": scores["train"].skipped,
        "train_pflop": round(state.train_pflop, 6),  # cumulative
    }
    if "raw_val" in totals:
        row |= {"raw_val_loss": totals["raw_val"].loss, "raw_val_acc": totals["raw_val"].accuracy}
    return row


def format_epoch(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs} | train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
        f"{' *' if improved else '  '}| lr {row['lr']:.4g} | {row['epoch_time_s']:.1f} s "
        f"({row['images_per_s']:.0f} img/s) | {row['train_pflop']:.3g} PFLOP"
    )


def write_summary(
    state: RunState,
    run_dir: Path,
    hardware: str,
    fast_path: FastPath,
    budget: TimeBudget | None = None,
) -> None:
    """Print the outcome and write it to ``summary.json`` for comparison tables."""
    summary = {
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "best_val_acc": state.best_val_acc,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 1),
        "train_pflop": round(state.train_pflop, 6),
        "hardware": hardware,
        "precision": fast_path.precision,
        "nchw_stages": list(fast_path.nchw_stages),
        "peak_rss_mib": peak_rss_mib(),
    }
    if budget is not None:
        summary["time_budget"] = budget.record(state.step, state.epoch, state.train_seconds)
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    reason = "stopped early" if state.stopped_early else "finished"
    tqdm.write(
        f"{reason} after {state.epoch} epochs ({state.train_seconds / 60:.1f} min). "
        f"best epoch {state.best_epoch}: val loss {state.best_val_loss:.4f}, "
        f"val acc {state.best_val_acc:.4f}\n"
        f"checkpoints: {run_dir / 'best.pt'} (best val loss), {run_dir / 'last.pt'}\n"
        f"evaluate: {shlex.join(['python', 'evaluate.py', '--ckpt', str(run_dir / 'best.pt')])}"
    )
