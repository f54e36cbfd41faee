"""A training run's live objects, how they are saved, and the epoch count they run to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from data import DataBundle
from training.budget import BudgetPlan, TimeBudget
from training.distributed import Distributed
from training.early_stopping import EarlyStopping
from training.interrupt import resume_command
from training.loop import StepContext
from training.run_state import RunState, make_checkpoint
from training.schedule import LrSchedule
from training.tensorboard import TensorBoardLog
from utils.checkpoint import save_checkpoint
from utils.config import Config
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
    tensorboard: TensorBoardLog | None = None  # rank 0 only

    @property
    def epochs(self) -> int:
        """The epochs the schedule is laid out for: planned by a budget, else configured."""
        return self.budget.plan.planned_epochs if self.budget else self.cfg.train.epochs

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
    """Lay the learning-rate schedule out for ``run.epochs`` (a budget may have re-planned)."""
    schedule = run.ctx.schedule
    run.ctx.schedule = LrSchedule(
        run.cfg.schedule, schedule.base_lr, run.epochs, len(run.data.train)
    )
    if announce and run.dist.is_main and run.budget is not None:
        tqdm.write(run.budget.describe())


def fits_budget(run: Run, state: RunState) -> bool:
    """Without a budget, always; with one, while the next epoch, timed as the last, fits."""
    if run.budget is None or not state.history:
        return True
    return run.budget.next_epoch_fits(state.history[-1]["epoch_time_s"], state.train_seconds)
