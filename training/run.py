"""A training run's live objects, how they are saved, and the epoch count they run to."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from data import DataBundle
from training.budget import BudgetPlan, TimeBudget, steps_within
from training.distributed import Distributed
from training.early_stopping import EarlyStopping
from training.interrupt import resume_command
from training.loop import StepContext
from training.run_state import RunState, make_checkpoint
from training.schedule import LrSchedule, SideSchedule
from training.tensorboard import TensorBoardLog
from utils.checkpoint import save_checkpoint
from utils.config import Config
from utils.errors import ConfigError
from utils.fast_path import FastPath
from utils.safe_write import WriteError


@dataclass
class Run:
    """The live objects of a training run."""

    cfg: Config
    run_dir: Path
    dist: Distributed
    device: torch.device
    fast_path: FastPath
    data: DataBundle
    model: nn.Module  # unwrapped: what checkpoints store and validation runs
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    ctx: StepContext  # its model is DDP-wrapped and/or compiled when configured
    budget: TimeBudget | None = None  # with train.time_budget_minutes
    budget_steps: int | None = None  # with train.budget_pflop: the steps it buys
    tensorboard: TensorBoardLog | None = None  # rank 0 only

    @property
    def epochs(self) -> int:
        """The epochs the schedule is laid out for: planned by a budget, else configured; a
        compute budget's last epoch may end early."""
        if self.budget_steps is not None:
            return math.ceil(self.budget_steps / len(self.data.train))
        return self.budget.plan.planned_epochs if self.budget else self.cfg.train.epochs

    @property
    def total_steps(self) -> int:
        """The optimiser steps the schedules are laid out for."""
        return self.budget_steps or self.epochs * len(self.data.train)

    def save(self, state: RunState, improved: bool = False) -> None:
        """Write best.pt when ``improved``, then last.pt; only rank 0 writes.

        best.pt goes first so that last.pt, which a resume reads, never records a best epoch
        whose file is not there. A failed write stops the run with what is kept on disk."""
        if self.budget is not None:
            state.budget = self.budget.state_dict()
        if not self.dist.is_main:
            return
        payload = make_checkpoint(
            self.cfg, self.data, self.model, self.optimizer, self.stopper, state,
            self.fast_path, self.ctx.scaler, self.ctx.ema,
        )  # fmt: skip
        try:
            if improved:
                save_checkpoint(payload, self.run_dir / "best.pt")
            save_checkpoint(payload, self.run_dir / "last.pt")
        except WriteError as err:
            kept = "no checkpoint was written yet"
            if (self.run_dir / "last.pt").is_file():
                kept = f"the previous files are kept; resume with: {resume_command(self.run_dir)}"
            raise WriteError(f"{err}; {kept}") from None


def time_budget(cfg: Config, data: DataBundle, state: RunState) -> TimeBudget | None:
    """The run's time budget, new or as a resumed run planned it; None without one."""
    minutes = cfg.train.time_budget_minutes
    if minutes is None:
        return None
    val_share = len(data.val.labels) / len(data.train.labels)
    if state.budget is not None:
        return TimeBudget(BudgetPlan(**state.budget), len(data.train), val_share)
    return TimeBudget.new(minutes, cfg.train.epochs, len(data.train), val_share)


def relay_schedule(run: Run, announce: bool = False) -> None:
    """Lay the learning-rate and side schedules out for ``run.total_steps`` (a budget may have
    re-planned)."""
    schedule, steps_per_epoch = run.ctx.schedule, len(run.data.train)
    run.ctx.schedule = LrSchedule(
        run.cfg.schedule, schedule.base_lr, run.epochs, steps_per_epoch, run.total_steps
    )
    run.ctx.sides = side_schedule(run.cfg, run.data.input_side, run.total_steps)
    if announce and run.dist.is_main and run.budget is not None:
        tqdm.write(run.budget.describe())


def fits_budget(run: Run, state: RunState) -> bool:
    """Without a budget, always; with one, while the next epoch, timed as the last, fits."""
    if run.budget is None or not state.history:
        return True
    return run.budget.next_epoch_fits(state.history[-1]["epoch_time_s"], state.train_seconds)


def side_schedule(cfg: Config, full_side: int, total_steps: int) -> SideSchedule | None:
    """Progressive resizing over ``total_steps``; None when ``data.progressive_from`` is off."""
    start = cfg.data.progressive_from
    if start is None:
        return None
    if start >= full_side:
        raise ConfigError(
            f"data.progressive_from: {start} is not below the input side, {full_side}; lower "
            "it or unset it"
        )
    return SideSchedule(full_side, total_steps, start, cfg.data.progressive_until)


def compute_budget_steps(
    cfg: Config, data: DataBundle, world_size: int, gflop_per_image: Callable[[int], float]
) -> int | None:
    """The steps that ``train.budget_pflop`` buys, over all ranks; None without that budget.
    Each step costs its images (a shorter last batch per epoch) at its side."""
    if cfg.train.budget_pflop is None:
        return None
    steps_per_epoch = len(data.train)
    per_rank = data.train.shard_size()
    last_batch = min(cfg.data.batch_size, per_rank - (steps_per_epoch - 1) * cfg.data.batch_size)

    def run_gflop(total_steps: int) -> float:
        sides = side_schedule(cfg, data.input_side, total_steps)
        gflop = 0.0
        for step in range(total_steps):
            last = step % steps_per_epoch == steps_per_epoch - 1
            images = (last_batch if last else cfg.data.batch_size) * world_size
            gflop += images * gflop_per_image(sides.side(step) if sides else data.input_side)
        return gflop

    return steps_within(cfg.train.budget_pflop * 1e6, run_gflop)
