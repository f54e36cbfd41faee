"""What a run reports: the row of metrics per epoch, its printed line, and ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.distributed import Distributed
from training.loop import EpochStats
from training.run_state import RunState
from utils.fast_path import FastPath
from utils.hardware import peak_rss_mib
from utils.run_log import write_text_atomic


def summed_over_ranks(dist: Distributed, stats: EpochStats) -> EpochStats:
    """Exact totals over all ranks: sums of losses and counts, not a mean of means."""
    loss_sum, correct, seen = dist.sum([stats.loss_sum, stats.correct, stats.seen])
    return EpochStats(loss_sum, round(correct), round(seen))


def epoch_row(
    dist: Distributed,
    lr: float,
    state: RunState,
    train: EpochStats,
    val: EpochStats,
    train_seconds: float,
    epoch_seconds: float,
) -> dict[str, Any]:
    """Count the finished epoch in ``state`` and append its metrics, summed over all ranks,
    to ``state.history``; returns that row."""
    train_all, val_all = summed_over_ranks(dist, train), summed_over_ranks(dist, val)
    state.step += train.steps
    state.epoch += 1
    state.train_seconds += epoch_seconds
    row = {
        "epoch": state.epoch,
        "train_loss": train_all.loss,
        "train_acc": train_all.accuracy,
        "val_loss": val_all.loss,
        "val_acc": val_all.accuracy,
        "lr": lr,
        "epoch_time_s": round(epoch_seconds, 2),
        "images_per_s": round(train_all.seen / train_seconds, 1),
        "skipped_steps": train.skipped,
    }
    state.history.append(row)
    return row


def format_epoch(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs} | train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
        f"{' *' if improved else '  '}| lr {row['lr']:.4g} | {row['epoch_time_s']:.1f} s "
        f"({row['images_per_s']:.0f} img/s)"
    )


def write_summary(state: RunState, run_dir: Path, hardware: str, fast_path: FastPath) -> None:
    """Print the outcome and write it to ``summary.json`` for comparison tables."""
    summary = {
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "best_val_acc": state.best_val_acc,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 1),
        "hardware": hardware,
        "precision": fast_path.precision,
        "nchw_stages": list(fast_path.nchw_stages),
        "peak_rss_mib": peak_rss_mib(),
    }
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    reason = "stopped early" if state.stopped_early else "finished"
    tqdm.write(
        f"{reason} after {state.epoch} epochs ({state.train_seconds / 60:.1f} min). "
        f"best epoch {state.best_epoch}: val loss {state.best_val_loss:.4f}, "
        f"val acc {state.best_val_acc:.4f}\n"
        f"checkpoints: {run_dir / 'best.pt'} (best val loss), {run_dir / 'last.pt'}\n"
        f"evaluate: python evaluate.py --ckpt {run_dir / 'best.pt'}"
    )
