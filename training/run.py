"""A training run's live objects, each with one owner, and how they are saved."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from data import DataBundle
from training.budget import TimeBudget
from training.distributed import Distributed
from training.early_stopping import EarlyStopping
from training.interrupt import resume_command
from training.loop import StepContext
from training.run_state import RunState, make_checkpoint
from training.schedule import LrSchedule, side_schedule
from training.tensorboard import TensorBoardLog
from utils.checkpoint import save_checkpoint
from utils.config import Config
from utils.device import FastPath
from utils.safe_write import WriteError


@dataclass
class Run:
    """The live objects of a training run. The step's objects (the module that trains,
    optimiser, schedules, scaler, weight average) belong to ``ctx``; others ask it for them."""

    cfg: Config
    run_dir: Path
    dist: Distributed
    device: torch.device
    fast_path: FastPath
    data: DataBundle
    model: nn.Module  # unwrapped: what checkpoints store and validation runs
    early_stopping: EarlyStopping
    ctx: StepContext  # its model is DDP-wrapped and/or compiled when configured
    budget: TimeBudget | None = None  # with train.time_budget_minutes
    budget_steps: int | None = None  # with train.budget_pflop: the steps it buys
    tensorboard: TensorBoardLog | None = None  # rank 0 only

    @property
    def total_steps(self) -> int:
        """The optimiser steps the schedules are laid out for: those a budget planned or
        bought, else ``train.epochs`` of them."""
        if self.budget_steps is not None:
            return self.budget_steps
        if self.budget is not None:
            return self.budget.plan.planned_steps
        return self.cfg.train.epochs * len(self.data.train)

    @property
    def epochs(self) -> int:
        """The epochs that ``total_steps`` start; a budget's last one may end early."""
        return math.ceil(self.total_steps / len(self.data.train))

    def replan_schedules(self, announce: bool = False) -> None:
        """Lay the learning-rate and side schedules out for ``total_steps`` (a budget may
        have planned them anew)."""
        schedule = LrSchedule(
            self.cfg.schedule,
            self.ctx.schedule.base_lr,
            epochs=self.epochs,
            steps_per_epoch=len(self.data.train),
            total_steps=self.total_steps,
        )
        self.ctx.replan(schedule, side_schedule(self.cfg, self.data.input_side, self.total_steps))
        if announce and self.dist.is_main and self.budget is not None:
            tqdm.write(self.budget.describe())

    def save(self, state: RunState, improved: bool = False) -> None:
        """Write best.pt when ``improved``, then last.pt; only rank 0 writes.

        best.pt goes first so that last.pt, which a resume reads, never records a best epoch
        whose file is not there. A failed write stops the run with what is kept on disk."""
        if not self.dist.is_main:
            return
        if self.budget is not None:
            state = dataclasses.replace(state, budget=self.budget.state_dict())
        payload = make_checkpoint(
            cfg=self.cfg,
            data=self.data,
            model=self.model,
            optimizer=self.ctx.optimizer,
            stopper=self.early_stopping,
            state=state,
            fast_path=self.fast_path,
            scaler=self.ctx.scaler,
            ema=self.ctx.ema,
        )
        try:
            if improved:
                save_checkpoint(payload, self.run_dir / "best.pt")
            save_checkpoint(payload, self.run_dir / "last.pt")
        except WriteError as err:
            kept = "no checkpoint was written yet"
            if (self.run_dir / "last.pt").is_file():
                kept = f"the previous files are kept; resume with: {resume_command(self.run_dir)}"
            raise WriteError(f"{err}; {kept}") from None
