"""Training to a budget: of time (plan the epoch count that fits, lay the schedule out for it)
or of compute (``steps_within``: the steps that a number of FLOPs buys).

The run times a few steps after the first ones (which set kernels up), estimates an epoch
with its validation pass, and plans the largest number of epochs (at most ``train.epochs``)
that fits ``train.time_budget_minutes``. After the first full epoch it re-plans once from the
measured epoch time if the estimate was off by more than ``REPLAN_ERROR``, and before each
epoch it stops if that epoch would overrun the budget. The minutes counted are those of
training and validation (``summary.json``'s ``train_seconds``), not the start-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from data import DataBundle
from training.schedule import side_schedule
from utils.config import Config

WARMUP_STEPS = 2  # untimed: the first steps set up kernels
TIMED_STEPS = 8
REPLAN_ERROR = 0.10
VAL_COST_PER_IMAGE = 1 / 3  # a forward pass, against training's forward and backward


@dataclass
class BudgetPlan:
    """The state of a budgeted run; plain numbers so a checkpoint can keep it."""

    minutes: float
    max_epochs: int
    planned_epochs: int  # the schedule's length: max_epochs until the first estimate
    first_plan: int | None = None  # the epochs planned from the timed steps
    estimated_epoch_s: float | None = None
    checked: bool = False  # the first full epoch was held against the estimate
    replanned: bool = False


class TimeBudget:
    """Plans and re-plans a run's epoch count; ``plan.planned_epochs`` is the schedule's."""

    def __init__(self, plan: BudgetPlan, steps_per_epoch: int, val_share: float) -> None:
        self.plan = plan
        self.steps_per_epoch = steps_per_epoch
        self.val_share = val_share  # validation images per training image
        self.timer_start: float | None = None

    @classmethod
    def new(
        cls, minutes: float, max_epochs: int, steps_per_epoch: int, val_share: float
    ) -> TimeBudget:
        return cls(BudgetPlan(minutes, max_epochs, max_epochs), steps_per_epoch, val_share)

    @property
    def seconds(self) -> float:
        return self.plan.minutes * 60

    def fit_epochs(self, epoch_seconds: float, spent: float, done: int) -> int:
        """Epochs done plus those of ``epoch_seconds`` that fit the rest; at least one more."""
        more = math.floor((self.seconds - spent) / epoch_seconds)
        return min(self.plan.max_epochs, max(done + 1, done + more))

    def after_step(self, step_in_epoch: int, spent: float) -> bool:
        """Time the steps of the first epoch; returns True once, when the plan is made."""
        if self.plan.first_plan is not None or step_in_epoch < WARMUP_STEPS:
            return False
        if self.timer_start is None:
            self.timer_start = time.perf_counter()
            self.timer_steps = step_in_epoch
            return False
        timed = step_in_epoch - self.timer_steps
        if timed < TIMED_STEPS:
            return False
        step_s = (time.perf_counter() - self.timer_start) / timed
        epoch_s = step_s * self.steps_per_epoch * (1 + self.val_share * VAL_COST_PER_IMAGE)
        self.plan.estimated_epoch_s = epoch_s
        self.plan.first_plan = self.plan.planned_epochs = self.fit_epochs(epoch_s, spent, 0)
        return True

    def after_epoch(self, epoch_seconds: float, spent: float, done: int) -> bool:
        """After the first full epoch only: re-plan from its time when the estimate was more
        than 10% off (or never made: epochs shorter than the timed steps); returns True when
        the plan changed."""
        if self.plan.checked:
            return False
        self.plan.checked = True
        estimate = self.plan.estimated_epoch_s
        if estimate is not None and abs(epoch_seconds - estimate) <= REPLAN_ERROR * estimate:
            return False
        self.plan.replanned = True
        self.plan.first_plan = self.plan.first_plan or self.plan.planned_epochs
        before = self.plan.planned_epochs
        self.plan.planned_epochs = self.fit_epochs(epoch_seconds, spent, done)
        return self.plan.planned_epochs != before

    def next_epoch_fits(self, last_epoch_seconds: float | None, spent: float) -> bool:
        """Whether another epoch, timed as the last one, fits; always before the first."""
        return last_epoch_seconds is None or spent + last_epoch_seconds <= self.seconds

    def describe(self) -> str:
        plan = self.plan
        epoch_min = f"{plan.estimated_epoch_s / 60:.2f}" if plan.estimated_epoch_s else "?"
        return (
            f"time budget {plan.minutes:g} min: about {epoch_min} min an epoch with validation "
            f"-> {plan.planned_epochs} epochs planned (at most train.epochs={plan.max_epochs})"
        )

    def overrun_warning(self) -> str | None:
        """A warning when the budget is shorter than the one epoch a run always trains."""
        epoch_s = self.plan.estimated_epoch_s
        if epoch_s is None or epoch_s <= self.seconds:
            return None
        return (
            f"warning: train.time_budget_minutes={self.plan.minutes:g} is shorter than one "
            f"epoch (about {epoch_s / 60:.2f} min with validation); the run trains one whole "
            "epoch. For a shorter run use train.budget_pflop, which can end inside an epoch"
        )

    def state_dict(self) -> dict[str, float | int | bool | None]:
        return asdict(self.plan)


def steps_within(budget_gflop: float, run_gflop: Callable[[int], float]) -> int:
    """The most steps (at least one) whose run, laid out over them, costs at most
    ``budget_gflop``. ``run_gflop(steps)`` is the cost of such a run; it grows with the steps
    (progressive resizing makes each step's side depend on the total, hence the search)."""
    high = 1
    while run_gflop(high) <= budget_gflop:
        high *= 2
    low = high // 2
    if low == 0:
        return 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if run_gflop(middle) <= budget_gflop else (low, middle)
    return low


def time_budget(
    cfg: Config, data: DataBundle, saved_plan: dict[str, Any] | None
) -> TimeBudget | None:
    """The run's time budget, new or as a resumed run planned it; None without one."""
    minutes = cfg.train.time_budget_minutes
    if minutes is None:
        return None
    val_share = len(data.val.labels) / len(data.train.labels)
    if saved_plan is not None:
        return TimeBudget(BudgetPlan(**saved_plan), len(data.train), val_share)
    return TimeBudget.new(minutes, cfg.train.epochs, len(data.train), val_share)


def compute_budget_steps(
    cfg: Config, data: DataBundle, world_size: int, gflop_per_image: Callable[[int], float]
) -> int | None:
    """The steps that ``train.budget_pflop`` buys, over all ranks; None without that budget.
    Each step costs its images (a shorter last batch per epoch) at its side."""
    if cfg.train.budget_pflop is None:
        return None
    steps_per_epoch, batch = len(data.train), cfg.data.batch_size
    last_batch = min(batch, data.train.shard_size() - (steps_per_epoch - 1) * batch)

    def run_gflop(total_steps: int) -> float:
        sides = side_schedule(cfg, data.input_side, total_steps)
        gflop = 0.0
        for step in range(total_steps):
            last = step % steps_per_epoch == steps_per_epoch - 1
            images = (last_batch if last else batch) * world_size
            gflop += images * gflop_per_image(sides.side(step) if sides else data.input_side)
        return gflop

    return steps_within(cfg.train.budget_pflop * 1e6, run_gflop)
