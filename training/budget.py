"""Training to a budget: of time (``TimeBudget``: plan the steps that fit, and plan again when
the measured pace drifts) or of compute (``compute_budget_steps``: the steps that a number of
FLOPs buys). Either way the schedules are laid out over the planned steps, and a run may end
inside an epoch.

A time budget prices a step by its FLOPs (``steps_gflop``; progressive resizing makes early
steps cheaper) at a measured rate, seconds per GFLOP, and adds one validation pass per epoch
end. It times the steps after the first few of each process (which set kernels up), plans
after ``TIMED_STEPS`` of them, and then every ``CHECK_EVERY`` steps predicts when the plan
would end at the pace of the last ``PACE_CHECKS`` x ``CHECK_EVERY`` steps of the epoch: more
than ``TOLERANCE`` of the budget away from it, it plans again from there. A recent pace
follows both a machine that gets busier and the larger, faster-per-FLOP steps that
progressive resizing brings. At each epoch end the plan is checked again with the validation
time just measured. The minutes counted are those of training and validation
(``summary.json``'s ``train_seconds``), not the start-up. Under torchrun every rank follows
rank 0's plan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from data import DataBundle
from training.distributed import Distributed
from training.schedule import side_schedule
from utils.config import Config
from utils.device import synchronize

WARMUP_STEPS = 2  # untimed: a process's first steps set up kernels
TIMED_STEPS = 8  # steps timed before the first plan
CHECK_EVERY = 25  # steps between checks of the plan against the measured pace
PACE_CHECKS = 4  # the pace is that of the last 4 x 25 steps of the epoch
TOLERANCE = 0.02  # of the budget: how far off the predicted end may be before planning again
VAL_COST_PER_IMAGE = 1 / 3  # a forward pass, against training's forward and backward

StepsGflop = Callable[[int, int], float]  # (first, total): GFLOP of steps first..total-1


@dataclass
class BudgetPlan:
    """The state of a time-budgeted run; plain numbers so a checkpoint can keep it."""

    minutes: float
    max_steps: int  # train.epochs of steps: the most a plan may hold
    planned_steps: int  # the schedules' length: max_steps until the first plan
    first_plan: int | None = None  # the steps planned from the first timed steps
    seconds_per_gflop: float | None = None  # the pace the plan in force assumed
    val_seconds: float | None = None  # one validation pass, as the last epoch measured it
    replans: int = 0  # plans after the first


def plan_from_saved(saved: dict[str, Any], steps_per_epoch: int) -> BudgetPlan:
    """A checkpoint's plan; one written when plans counted epochs is read as their steps."""
    if "max_steps" in saved:
        return BudgetPlan(**saved)
    first = saved.get("first_plan")
    return BudgetPlan(
        minutes=saved["minutes"],
        max_steps=saved["max_epochs"] * steps_per_epoch,
        planned_steps=saved["planned_epochs"] * steps_per_epoch,
        first_plan=None if first is None else first * steps_per_epoch,
    )


class TimeBudget:
    """Plans a run's steps to end on ``plan.minutes``; ``plan.planned_steps`` is the
    schedules' length. ``after_step`` and ``after_epoch`` return True when it changed."""

    def __init__(
        self,
        plan: BudgetPlan,
        *,
        steps_per_epoch: int,
        steps_gflop: StepsGflop,
        val_gflop: float,
        agree: Callable[[int], int] = lambda steps: steps,
        wait_for_device: Callable[[], None] = lambda: None,
    ) -> None:
        self.plan = plan
        self.steps_per_epoch = steps_per_epoch
        self.steps_gflop = steps_gflop  # this process's share of the steps
        self.val_gflop = val_gflop  # a validation pass in training GFLOP (before it is timed)
        self.agree = agree  # rank 0's planned steps, on every rank
        # before each clock read: a GPU runs behind the host, which would time its queueing
        self.wait_for_device = wait_for_device
        self.warm_steps = 0  # steps this process took, until WARMUP_STEPS
        # (time, epoch GFLOP, step) where timing started in this epoch, then at each check
        self.marks: list[tuple[float, float, int]] = []

    @property
    def seconds(self) -> float:
        return self.plan.minutes * 60

    def start_epoch(self) -> None:
        """Time the new epoch's steps from its start: validation is not a step's time."""
        self.marks = []

    def ends_at(self, seconds_per_gflop: float, step: int, spent: float, total: int) -> float:
        """When a run of ``total`` steps would end, ``spent`` seconds and ``step`` steps in."""
        epochs_done = step // self.steps_per_epoch
        validations = math.ceil(total / self.steps_per_epoch) - epochs_done
        val_seconds = self.plan.val_seconds or self.val_gflop * seconds_per_gflop
        training = self.steps_gflop(step, total) * seconds_per_gflop
        return spent + training + max(0, validations) * val_seconds

    def fit_steps(self, seconds_per_gflop: float, step: int, spent: float) -> int:
        """The most steps (at most ``max_steps``) that end within the budget at this pace, and
        at least one more than the ``step`` taken: a plan that ended the run at once would
        leave its last steps at the lr of the plan before, never annealed."""

        def fits(total: int) -> bool:
            return self.ends_at(seconds_per_gflop, step, spent, total) <= self.seconds

        high = self.plan.max_steps
        low = min(step + 1, high)
        if fits(high):
            return high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low

    def check(self, seconds_per_gflop: float, step: int, spent: float) -> bool:
        """Plan from this pace when there is no plan yet, or when the plan in force would end
        more than ``TOLERANCE`` of the budget away from it; every rank calls this at the same
        steps, and all follow rank 0's plan."""
        plan = self.plan
        planned = plan.planned_steps
        end = self.ends_at(seconds_per_gflop, step, spent, planned)
        if plan.first_plan is None or abs(end - self.seconds) > TOLERANCE * self.seconds:
            planned = self.fit_steps(seconds_per_gflop, step, spent)
            plan.seconds_per_gflop = seconds_per_gflop
        planned = self.agree(planned)
        changed = planned != plan.planned_steps
        if plan.first_plan is None:
            plan.first_plan = planned
        elif changed:
            plan.replans += 1
        plan.planned_steps = planned
        return changed

    def after_step(self, step: int, epoch_gflop: float, spent: float) -> bool:
        """Time the steps (``step``: the steps taken in all; ``epoch_gflop``: this epoch's
        compute so far) and check the plan when it is due."""
        if self.warm_steps < WARMUP_STEPS:
            self.warm_steps += 1
            return False
        if not self.marks:
            self.marks = [(self.clock()[0], epoch_gflop, step)]
            return False
        timed = step - self.marks[0][2]
        due = timed % CHECK_EVERY == 0 if self.plan.first_plan is not None else timed >= TIMED_STEPS
        if not due or epoch_gflop <= self.marks[0][1]:
            return False
        now, waited = self.clock()
        start, start_gflop, _ = self.marks[max(0, len(self.marks) - PACE_CHECKS)]
        self.marks.append((now, epoch_gflop, step))
        return self.check((now - start) / (epoch_gflop - start_gflop), step, spent + waited)

    def clock(self) -> tuple[float, float]:
        """Now, once the device has done the steps queued so far, and the seconds that wait
        took (time ``spent`` did not yet count). Read only at marks, so a GPU waits once in
        ``CHECK_EVERY`` steps, and only in a time-budgeted run."""
        before = time.perf_counter()
        self.wait_for_device()
        now = time.perf_counter()
        return now, now - before

    def after_epoch(
        self, *, train_seconds: float, gflop: float, val_seconds: float, step: int, spent: float
    ) -> bool:
        """Keep the validation time just measured and check the plan with it, at the pace the
        plan assumed (the epoch's own where there is no plan yet), unless the run has ended:
        its last epoch is over, so its steps are what they are."""
        self.plan.val_seconds = val_seconds
        if step >= self.plan.planned_steps or gflop <= 0:
            return False
        return self.check(self.plan.seconds_per_gflop or train_seconds / gflop, step, spent)

    def describe(self) -> str:
        plan = self.plan
        epochs = plan.planned_steps / self.steps_per_epoch
        pace = f"{1 / plan.seconds_per_gflop:.0f} GFLOP/s" if plan.seconds_per_gflop else "?"
        again = f" (plan {plan.replans + 1})" if plan.replans else ""
        return (
            f"time budget {plan.minutes:g} min: training at {pace} -> {plan.planned_steps} "
            f"steps ({epochs:.1f} epochs) planned{again}, at most train.epochs="
            f"{plan.max_steps // self.steps_per_epoch}"
        )

    def record(self, steps_run: int, epochs_run: int, train_seconds: float) -> dict[str, Any]:
        """What ``summary.json`` keeps of the budget: the plans, and what was used."""
        plan, per_epoch = self.plan, self.steps_per_epoch
        first = plan.first_plan
        return {
            "minutes": plan.minutes,
            "first_planned_steps": first,
            "planned_steps": plan.planned_steps,
            "replans": plan.replans,
            "first_planned_epochs": None if first is None else math.ceil(first / per_epoch),
            "planned_epochs": math.ceil(plan.planned_steps / per_epoch),
            "steps_run": steps_run,
            "epochs_run": epochs_run,
            "minutes_used": round(train_seconds / 60, 2),
        }

    def state_dict(self) -> dict[str, float | int | None]:
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


def steps_gflop(
    cfg: Config, data: DataBundle, world_size: int, gflop_per_image: Callable[[int], float]
) -> StepsGflop:
    """``(first, total) -> GFLOP`` of steps first..total-1, over ``world_size`` ranks, of a
    run whose schedules are laid out over ``total`` steps. Each step costs its images (a
    shorter last batch per epoch) at its side."""
    steps_per_epoch, batch = len(data.train), cfg.data.batch_size
    last_batch = min(batch, data.train.shard_size() - (steps_per_epoch - 1) * batch)

    def gflop(first: int, total: int) -> float:
        sides = side_schedule(cfg, data.input_side, total)
        spent = 0.0
        for step in range(first, total):
            last = step % steps_per_epoch == steps_per_epoch - 1
            images = (last_batch if last else batch) * world_size
            spent += images * gflop_per_image(sides.side(step) if sides else data.input_side)
        return spent

    return gflop


def time_budget(
    cfg: Config,
    data: DataBundle,
    saved_plan: dict[str, Any] | None,
    *,
    gflop_per_image: Callable[[int], float],
    agree: Callable[[int], int],
    wait_for_device: Callable[[], None] = lambda: None,
) -> TimeBudget | None:
    """The run's time budget, new or as a resumed run planned it; None without one."""
    minutes = cfg.train.time_budget_minutes
    if minutes is None:
        return None
    steps_per_epoch = len(data.train)
    if saved_plan is not None:
        plan = plan_from_saved(saved_plan, steps_per_epoch)
    else:
        max_steps = cfg.train.epochs * steps_per_epoch
        plan = BudgetPlan(minutes, max_steps, max_steps)
    return TimeBudget(
        plan,
        steps_per_epoch=steps_per_epoch,
        steps_gflop=steps_gflop(cfg, data, 1, gflop_per_image),
        val_gflop=data.val.shard_size() * gflop_per_image(data.input_side) * VAL_COST_PER_IMAGE,
        agree=agree,
        wait_for_device=wait_for_device,
    )


def compute_budget_steps(
    cfg: Config, data: DataBundle, world_size: int, gflop_per_image: Callable[[int], float]
) -> int | None:
    """The steps that ``train.budget_pflop`` buys, over all ranks; None without that budget."""
    if cfg.train.budget_pflop is None:
        return None
    gflop = steps_gflop(cfg, data, world_size, gflop_per_image)
    return steps_within(cfg.train.budget_pflop * 1e6, lambda total: gflop(0, total))


def plan_budgets(
    cfg: Config,
    data: DataBundle,
    saved_plan: dict[str, Any] | None,
    *,
    gflop_per_image: Callable[[int], float],
    dist: Distributed,
    device: torch.device,
) -> tuple[TimeBudget | None, int | None]:
    """The run's budget: a time budget (new, or as a resumed run planned it) or the steps
    that a compute budget buys over all ranks; None for the kind the run does not have."""
    timed = time_budget(
        cfg,
        data,
        saved_plan,
        gflop_per_image=gflop_per_image,
        agree=dist.main_count,
        wait_for_device=lambda: synchronize(device),
    )
    return timed, compute_budget_steps(cfg, data, dist.world_size, gflop_per_image)
