"""``fit``: config -> data -> model -> optimiser and schedule -> epochs -> checkpoints.

Takes a typed ``Config`` and a run directory; knows nothing of YAML files or the command line.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from data import DataBundle, create_data
from models import create_model
from training.early_stopping import EarlyStopping
from training.interrupt import StopOnSignal, TrainingInterruptedError
from training.loop import (
    EpochStats,
    NonFiniteLossError,
    StepContext,
    evaluate_loss_accuracy,
    train_one_epoch,
)
from training.schedule import LrSchedule
from utils.checkpoint import FORMAT_VERSION, save_checkpoint
from utils.config import Config, ModelConfig, OptimConfig, config_to_dict, save_config
from utils.device import autocast_factory, resolve_device, resolve_precision
from utils.hardware import describe_hardware
from utils.run_log import write_history


@dataclass
class RunState:
    """Progress of a run: everything besides module/optimiser state needed to resume it."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_val_acc: float = 0.0
    stopped_early: bool = False
    train_seconds: float = 0.0
    partial_epoch: dict[str, Any] | None = None  # sums and RNG of an epoch cut short


def model_args(cfg: ModelConfig, num_classes: int) -> dict[str, Any]:
    """Construction arguments of the model; stored in checkpoints to rebuild it."""
    return {
        "arch": cfg.arch,
        "num_classes": num_classes,
        "stem": cfg.stem,
        "dropout": cfg.dropout,
        "zero_init_residual": cfg.zero_init_residual,
    }


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay is L2 on every parameter, as in the seed recipe."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )


def make_checkpoint(
    cfg: Config,
    data: DataBundle,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stopper: EarlyStopping,
    state: RunState,
) -> dict[str, Any]:
    """Everything needed to evaluate the model or resume the run, as plain data and tensors."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "model_args": model_args(cfg.model, len(data.class_names)),
        "class_names": data.class_names,
        "normalization": {"mean": data.mean, "std": data.std},
        "val_indices": data.val_indices,
        "config": config_to_dict(cfg),
        "epoch": state.epoch,
        "step": state.step,
        "metrics": state.history[-1] if state.history else {},
        "run_state": {k: v for k, v in vars(state).items() if k not in ("epoch", "step")},
        "optimizer": optimizer.state_dict(),
        "early_stopping": stopper.state_dict(),
        "rng": rng,
    }


def restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stopper: EarlyStopping,
) -> RunState:
    """Load a checkpoint's states into the live objects and return the run's progress."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    stopper.load_state_dict(checkpoint["early_stopping"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if "cuda" in checkpoint["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    return RunState(epoch=checkpoint["epoch"], step=checkpoint["step"], **checkpoint["run_state"])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation RNG of one epoch: a pure function of (seed, epoch), so resumes match."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)


def fit(
    cfg: Config,
    run_dir: Path,
    checkpoint: dict[str, Any] | None = None,
    stop_after_epochs: int | None = None,
) -> RunState:
    """Train per ``cfg``, writing checkpoints and metrics to ``run_dir``; resume from
    ``checkpoint`` when given. ``stop_after_epochs`` ends this call early (resumable).
    Returns the run state."""
    device = resolve_device(cfg.train.device)
    precision = resolve_precision(cfg.train.precision, device)
    channels_last = cfg.train.channels_last
    torch.manual_seed(cfg.train.seed)
    data = create_data(cfg.data, cfg.train.seed, device, channels_last)
    model = create_model(**model_args(cfg.model, len(data.class_names))).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optim)
    stopper = EarlyStopping(**vars(cfg.early_stopping))
    state = RunState()
    if checkpoint is not None:
        state = restore(checkpoint, model, optimizer, stopper)
    ctx = StepContext(
        model=torch.compile(model) if cfg.train.compile else model,  # checkpoints keep `model`
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing),
        schedule=LrSchedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs, len(data.train)),
        autocast=autocast_factory(precision, device),
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
        skip_nonfinite=cfg.train.nonfinite_loss == "skip",
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    hardware = describe_hardware(device)
    tqdm.write(
        f"run {run_dir} | {hardware} | precision {precision} | "
        f"{len(data.train.labels)} train / {len(data.val.labels)} val images"
    )

    def save(improved: bool = False) -> None:
        payload = make_checkpoint(cfg, data, model, optimizer, stopper, state)
        save_checkpoint(payload, run_dir / "last.pt")
        if improved:
            save_checkpoint(payload, run_dir / "best.pt")

    first_epoch = state.epoch
    with StopOnSignal() as stop:
        while state.epoch < cfg.train.epochs and not state.stopped_early:
            if stop_after_epochs is not None and state.epoch - first_epoch >= stop_after_epochs:
                return state
            row = run_epoch(cfg, data, ctx, state, stop.requested)
            if row is None:  # stopped by a signal in the middle of the epoch
                save()
                raise interrupted(stop.signum or signal.SIGINT, state, run_dir)
            state.stopped_early = stopper.update(row["val_loss"])
            improved = row["val_loss"] < state.best_val_loss
            if improved:
                state.best_epoch = row["epoch"]
                state.best_val_loss, state.best_val_acc = row["val_loss"], row["val_acc"]
            save(improved)
            write_history(state.history, run_dir)
            tqdm.write(format_epoch(row, cfg.train.epochs, improved))
            if stop.requested() and state.epoch < cfg.train.epochs and not state.stopped_early:
                raise interrupted(stop.signum or signal.SIGINT, state, run_dir)
    write_summary(state, run_dir, hardware, precision)
    return state


def interrupted(signum: int, state: RunState, run_dir: Path) -> TrainingInterruptedError:
    where = (
        f"epoch {state.epoch + 1}, batch {state.partial_epoch['steps']}"
        if (state.partial_epoch)
        else f"the end of epoch {state.epoch}"
    )
    return TrainingInterruptedError(
        f"{signal.Signals(signum).name}: stopped at {where}; saved {run_dir / 'last.pt'}. "
        f"Resume with: python train.py --resume {run_dir}",
        signum,
    )


def run_epoch(
    cfg: Config,
    data: DataBundle,
    ctx: StepContext,
    state: RunState,
    should_stop: Callable[[], bool],
) -> dict[str, Any] | None:
    """Train one epoch (or the rest of a partial one), validate, and append the epoch's
    metrics to ``state.history``. Returns None, with ``state.partial_epoch`` set, when
    ``should_stop()`` cut the epoch short."""
    epoch = state.epoch
    start = time.perf_counter()
    gen = epoch_generator(cfg.train.seed, epoch)
    stats = EpochStats()
    if state.partial_epoch is not None:  # continue where a stopped run left this epoch
        partial = dict(state.partial_epoch)
        gen.set_state(partial.pop("generator"))
        stats = EpochStats(**partial)
    desc = f"epoch {epoch + 1}/{cfg.train.epochs}"
    batches = data.train.batches(epoch, start_batch=stats.steps)
    try:
        stats = train_one_epoch(
            ctx, batches, data.train_transform, gen, state.step, len(data.train), desc, stats,
            should_stop,
        )  # fmt: skip
    except NonFiniteLossError as err:
        raise NonFiniteLossError(f"epoch {epoch + 1}: {err}") from None
    if stats.interrupted:
        state.partial_epoch = {**vars(stats), "interrupted": False, "generator": gen.get_state()}
        return None
    state.partial_epoch = None
    train_seconds = time.perf_counter() - start
    val = evaluate_loss_accuracy(
        ctx.model, data.val.batches(), data.eval_transform, ctx.autocast, len(data.val)
    )
    elapsed = time.perf_counter() - start
    state.step += stats.steps
    state.epoch += 1
    state.train_seconds += elapsed
    row = {
        "epoch": state.epoch,
        "train_loss": stats.loss,
        "train_acc": stats.accuracy,
        "val_loss": val.loss,
        "val_acc": val.accuracy,
        "lr": ctx.optimizer.param_groups[0]["lr"],
        "epoch_time_s": round(elapsed, 2),
        "images_per_s": round(stats.seen / train_seconds, 1),
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
        "peak_rss_mib": peak_rss_mib(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    reason = "stopped early" if state.stopped_early else "finished"
    tqdm.write(
        f"{reason} after {state.epoch} epochs ({state.train_seconds / 60:.1f} min). "
        f"best epoch {state.best_epoch}: val loss {state.best_val_loss:.4f}, "
        f"val acc {state.best_val_acc:.4f}\n"
        f"checkpoints: {run_dir / 'best.pt'} (best val loss), {run_dir / 'last.pt'}\n"
        f"evaluate: python evaluate.py --ckpt {run_dir / 'best.pt'}"
    )
