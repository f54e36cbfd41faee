"""``fit``: config -> data -> model -> optimiser and schedule -> epochs -> checkpoints.

Takes a typed ``Config`` and a run directory; knows nothing of YAML files or the command line.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from data.split import check_same_data
from training.distributed import Distributed, init_distributed
from training.interrupt import StopOnSignal, TrainingInterruptedError
from training.loop import (
    EpochStats,
    NonFiniteLossError,
    evaluate_loss_accuracy,
    train_one_epoch,
)
from training.run_state import RunState, restore
from training.setup import Run, setup_run
from utils.config import Config, save_config
from utils.device import emulated_bf16_warning, resolve_device, resolve_precision
from utils.errors import UserError
from utils.hardware import describe_hardware
from utils.run_log import write_history, write_text_atomic


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation RNG of one epoch: a pure function of (seed, epoch), so resumes match."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)


def check_same_world_size(trained: int | None, now: int) -> None:
    """Refuse to resume with another process count: the step count and the shards assume it."""
    if trained is not None and trained != now:
        raise UserError(
            f"this run trained with {trained} process(es) and is resumed with {now}; its "
            f"learning-rate schedule and data shards assume {trained}, so resume with {trained}"
        )


def fit(
    cfg: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    stop_after_epochs: int | None = None,
) -> RunState:
    """Train per ``cfg``, writing checkpoints and metrics to ``run_dir``; resume from
    ``checkpoint`` when given. ``stop_after_epochs`` ends this call early (resumable).
    Under torchrun every rank calls this; rank 0 alone writes files. Returns the run state."""
    dist = init_distributed(resolve_device(cfg.train.device))
    precision = nchw_stages = None  # a new run chooses; a resumed one keeps its choice
    if checkpoint is not None:
        check_same_world_size(checkpoint["run_state"].get("world_size"), dist.world_size)
        # checkpoints from before the layout probe trained in channels_last throughout
        nchw_stages = checkpoint["run_state"].get("nchw_stages", [])
        device = resolve_device(cfg.train.device)
        stored = checkpoint["run_state"].get("precision") or cfg.train.precision
        precision = resolve_precision(stored, device)  # fp16 from a GPU run is refused on CPU
    run = setup_run(cfg, run_dir, dist, precision, nchw_stages)
    if checkpoint is not None:
        check_same_data(checkpoint.get("data_fingerprint"), run.data.fingerprint, cfg.data.root)
    state = RunState()
    if checkpoint is not None:
        state = restore(checkpoint, run.model, run.optimizer, run.stopper, run.ctx.scaler)
    state.precision, state.nchw_stages = run.precision, run.nchw_stages
    state.world_size = dist.world_size
    if dist.enabled:  # distinct dropout masks per rank
        torch.manual_seed(cfg.train.seed + 1_000 * dist.rank + 100_003 * state.epoch)
    hardware = describe_hardware(run.device)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        tqdm.write(
            f"run {run_dir} | {hardware} x{dist.world_size} | precision {run.precision} | "
            f"{describe_layout(cfg.train.channels_last, run.nchw_stages)} | "
            f"{len(run.data.train.labels)} train / {len(run.data.val.labels)} val images"
        )
        if warning := emulated_bf16_warning(run.precision, run.device):
            tqdm.write(warning, file=sys.stderr)
        if dist.enabled and cfg.train.save_every_minutes is not None:
            tqdm.write(
                "warning: train.save_every_minutes is ignored under torchrun: an epoch cut "
                "short restarts there, so last.pt is written at epoch ends only",
                file=sys.stderr,
            )
    first_epoch = state.epoch
    with StopOnSignal() as stop:

        def should_stop() -> bool:
            return dist.any(stop.requested())

        while state.epoch < cfg.train.epochs and not state.stopped_early:
            if stop_after_epochs is not None and state.epoch - first_epoch >= stop_after_epochs:
                return state
            row = run_epoch(run, state, should_stop)
            if row is None:  # stopped by a signal in the middle of the epoch
                if dist.enabled:  # per-rank RNG and sums are not gathered: redo the epoch
                    state.partial_epoch = None
                else:
                    run.save(state)
                raise interrupted(stop.signum or signal.SIGTERM, state, run_dir)
            finish_epoch(run, state, row)
            if should_stop() and state.epoch < cfg.train.epochs and not state.stopped_early:
                raise interrupted(stop.signum or signal.SIGTERM, state, run_dir)
    if dist.is_main:
        write_summary(state, run_dir, f"{hardware} x{dist.world_size}", run.precision)
    return state


def finish_epoch(run: Run, state: RunState, row: dict[str, Any]) -> None:
    """Early-stopping decision (rank 0's, broadcast), best tracking, checkpoints, logs."""
    state.stopped_early = run.dist.broadcast_from_main(run.stopper.update(row["val_loss"]))
    improved = row["val_loss"] < state.best_val_loss
    if improved:
        state.best_epoch = row["epoch"]
        state.best_val_loss, state.best_val_acc = row["val_loss"], row["val_acc"]
    run.save(state, improved)
    if run.dist.is_main:
        write_history(state.history, run.run_dir)
        tqdm.write(format_epoch(row, run.cfg.train.epochs, improved))


def interrupted(signum: int, state: RunState, run_dir: Path) -> TrainingInterruptedError:
    name = signal.Signals(signum).name
    if not (run_dir / "last.pt").is_file():  # data parallel: no save inside the first epoch
        message = f"{name}: stopped in epoch 1, before any checkpoint; start the run again"
        return TrainingInterruptedError(message, signum)
    where = (
        f"epoch {state.epoch + 1}, batch {state.partial_epoch['steps']}"
        if state.partial_epoch
        else f"the end of epoch {state.epoch} (a partly done epoch restarts on resume)"
    )
    return TrainingInterruptedError(
        f"{name}: stopped at {where}; saved {run_dir / 'last.pt'}. "
        f"Resume with: python train.py --resume {run_dir}",
        signum,
    )


def summed_over_ranks(dist: Distributed, stats: EpochStats) -> EpochStats:
    """Exact totals over all ranks: sums of losses and counts, not a mean of means."""
    loss_sum, correct, seen = dist.sum([stats.loss_sum, stats.correct, stats.seen])
    return EpochStats(loss_sum, round(correct), round(seen))


class SaveClock:
    """Says when ``minutes`` have passed since it was last restarted; never, for None."""

    def __init__(self, minutes: float | None) -> None:
        self.seconds = None if minutes is None else minutes * 60
        self.restart()

    def restart(self) -> None:
        self.since = time.monotonic()

    def due(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.since >= self.seconds


def partial_epoch(stats: EpochStats, gen: torch.Generator, seconds: float) -> dict[str, Any]:
    """What a checkpoint keeps of an epoch cut short: its sums, its augmentation RNG, its time."""
    return {**vars(stats), "interrupted": False, "generator": gen.get_state(), "seconds": seconds}


def train_with_timed_saves(
    run: Run,
    state: RunState,
    gen: torch.Generator,
    stats: EpochStats,
    should_stop: Callable[[], bool],
    elapsed: Callable[[], float],
) -> EpochStats:
    """Train the rest of the epoch. Every ``train.save_every_minutes`` it pauses after a step,
    writes the partial epoch to last.pt as a stop would, and goes on: the batches and RNG
    continue unchanged, so the saves alter nothing. Single-process only: under torchrun an
    epoch cut short restarts (see ``fit``). Returns with ``interrupted`` set when
    ``should_stop()`` cut the epoch short."""
    cfg, data, dist, epoch = run.cfg, run.data, run.dist, state.epoch
    clock = SaveClock(None if dist.enabled else cfg.train.save_every_minutes)
    desc = f"epoch {epoch + 1}/{cfg.train.epochs}"
    while True:
        batches = data.train.batches(epoch, start_batch=stats.steps)
        try:
            stats = train_one_epoch(
                run.ctx, batches, data.train_transform, gen, state.step, len(data.train), desc,
                stats, lambda: should_stop() or clock.due(), progress=dist.is_main,
            )  # fmt: skip
        except NonFiniteLossError as err:
            raise NonFiniteLossError(f"epoch {epoch + 1}: {err}") from None
        if not stats.interrupted or should_stop():
            return stats
        state.partial_epoch = partial_epoch(stats, gen, elapsed())
        run.save(state)
        clock.restart()
        stats.interrupted = False


def run_epoch(run: Run, state: RunState, should_stop: Callable[[], bool]) -> dict[str, Any] | None:
    """Train one epoch (or the rest of a partial one), validate, and append the epoch's
    metrics, summed over all ranks, to ``state.history``. Returns None, with
    ``state.partial_epoch`` set, when ``should_stop()`` cut the epoch short."""
    cfg, data, dist, epoch = run.cfg, run.data, run.dist, state.epoch
    start = time.perf_counter()
    gen = epoch_generator(cfg.train.seed + 7_919 * dist.rank, epoch)
    stats = EpochStats()
    prior_seconds = 0.0  # time spent on this epoch before a stop, for honest epoch timings
    if state.partial_epoch is not None:  # continue where a stopped run left this epoch
        partial = dict(state.partial_epoch)
        gen.set_state(partial.pop("generator"))
        prior_seconds = partial.pop("seconds", 0.0)
        stats = EpochStats(**partial)

    def elapsed() -> float:
        return prior_seconds + time.perf_counter() - start

    stats = train_with_timed_saves(run, state, gen, stats, should_stop, elapsed)
    if stats.interrupted:
        state.partial_epoch = partial_epoch(stats, gen, elapsed())
        return None
    state.partial_epoch = None
    train_seconds = elapsed()
    dist.share_buffers_from_main(run.model)
    val = evaluate_loss_accuracy(
        run.model, data.val.batches(), data.eval_transform, run.ctx.autocast, len(data.val),
        progress=dist.is_main,
    )  # fmt: skip
    train_all, val_all = summed_over_ranks(dist, stats), summed_over_ranks(dist, val)
    epoch_seconds = elapsed()
    state.step += stats.steps
    state.epoch += 1
    state.train_seconds += epoch_seconds
    row = {
        "epoch": state.epoch,
        "train_loss": train_all.loss,
        "train_acc": train_all.accuracy,
        "val_loss": val_all.loss,
        "val_acc": val_all.accuracy,
        "lr": run.optimizer.param_groups[0]["lr"],
        "epoch_time_s": round(epoch_seconds, 2),
        "images_per_s": round(train_all.seen / train_seconds, 1),
        "skipped_steps": stats.skipped,
    }
    state.history.append(row)
    return row


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far; None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def format_epoch(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs} | train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f} | val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
        f"{' *' if improved else '  '}| lr {row['lr']:.4g} | {row['epoch_time_s']:.1f} s "
        f"({row['images_per_s']:.0f} img/s)"
    )


def describe_layout(channels_last: bool, nchw_stages: list[str]) -> str:
    if not channels_last:
        return "NCHW"
    return "channels_last" + (f" ({', '.join(nchw_stages)} NCHW)" if nchw_stages else "")


def write_summary(state: RunState, run_dir: Path, hardware: str, precision: str) -> None:
    """Print the outcome and write it to ``summary.json`` for comparison tables."""
    summary = {
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss,
        "best_val_acc": state.best_val_acc,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "train_seconds": round(state.train_seconds, 1),
        "hardware": hardware,
        "precision": precision,
        "nchw_stages": state.nchw_stages,
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
