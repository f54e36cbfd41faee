"""train.time_budget_minutes: plan the steps that fit, plan again when the pace drifts, end on
the budget."""

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

import training.budget
from tests.conftest import tiny_config
from training.budget import BudgetPlan, TimeBudget, plan_from_saved
from training.schedule import LrSchedule
from training.trainer import fit
from utils.checkpoint import load_checkpoint

STEPS_PER_EPOCH = 30


def budget_of(minutes: float, max_epochs: int = 50, agree=lambda steps: steps) -> TimeBudget:
    """A budget over steps of 1 GFLOP each, whose validation costs 3 steps' GFLOP."""
    max_steps = max_epochs * STEPS_PER_EPOCH
    return TimeBudget(
        BudgetPlan(minutes, max_steps, max_steps),
        steps_per_epoch=STEPS_PER_EPOCH,
        steps_gflop=lambda first, total: float(max(0, total - first)),
        val_gflop=3.0,
        agree=agree,
    )


def simulate(
    budget: TimeBudget, monkeypatch: pytest.MonkeyPatch, step_seconds: Callable[[float], float]
) -> tuple[float, list[int]]:
    """Train to the budget's plan on a fake clock, a step taking ``step_seconds(spent)`` and a
    validation pass 3 s; returns the seconds spent and each plan in force."""
    now = [0.0]
    monkeypatch.setattr(training.budget.time, "perf_counter", lambda: now[0])
    spent, step, plans = 0.0, 0, [budget.plan.planned_steps]
    while step < budget.plan.planned_steps:
        budget.start_epoch()
        epoch_start, epoch_gflop, epoch_end = spent, 0.0, step + STEPS_PER_EPOCH
        while step < min(budget.plan.planned_steps, epoch_end):
            seconds = step_seconds(spent)
            now[0] += seconds
            spent, step, epoch_gflop = spent + seconds, step + 1, epoch_gflop + 1.0
            if budget.after_step(step, epoch_gflop, spent):
                plans.append(budget.plan.planned_steps)
        train_seconds = spent - epoch_start
        spent += 3.0
        now[0] += 3.0
        if budget.after_epoch(
            train_seconds=train_seconds, gflop=epoch_gflop, val_seconds=3.0, step=step, spent=spent
        ):
            plans.append(budget.plan.planned_steps)
    return spent, plans


def first_plan_behind_the_host(monkeypatch: pytest.MonkeyPatch, wait: bool) -> tuple[int, int]:
    """200 steps on a GPU-like device: the host queues a step in 0.1 s, the device takes 1 s
    for it. Returns the first plan and how often the budget waited for the device."""
    host, device, waits = [0.0], [0.0], []

    def wait_for_device() -> None:
        waits.append(host[0])
        host[0] = max(host[0], device[0])

    budget = budget_of(minutes=10)
    if wait:
        budget.wait_for_device = wait_for_device
    monkeypatch.setattr(training.budget.time, "perf_counter", lambda: host[0])
    for step in range(1, 201):
        device[0] = max(device[0], host[0]) + 1.0
        host[0] += 0.1
        budget.after_step(step, float(step), host[0])
    return budget.plan.first_plan, len(waits)


def test_a_device_behind_the_host_is_waited_for_at_each_clock_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_plan, waits = first_plan_behind_the_host(monkeypatch, wait=True)
    assert first_plan == 543  # as for 1 s steps (the steady test below)
    assert waits <= 200 // 25 + 2  # at the marks only, not at every step
    first_plan, _ = first_plan_behind_the_host(monkeypatch, wait=False)
    assert first_plan == 1500  # timing the queueing: 0.1 s steps, every step fits


def test_a_steady_pace_plans_once_and_ends_on_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = budget_of(minutes=10)
    spent, plans = simulate(budget, monkeypatch, lambda _spent: 1.0)
    # 1 s a step, 3 s a validation: 18 epochs of 30 steps take 594 s, and the 6 s left hold
    # 3 steps of a 19th epoch and its validation
    assert plans == [1500, 543]
    assert budget.plan.first_plan == 543 and budget.plan.replans == 0
    assert abs(spent - 600) <= 0.02 * 600 and spent <= 600


def test_a_pace_that_drifts_is_planned_again(monkeypatch: pytest.MonkeyPatch) -> None:
    budget = budget_of(minutes=10)
    # after 200 s something else takes half the machine: steps take twice as long
    spent, plans = simulate(budget, monkeypatch, lambda spent: 1.0 if spent < 200 else 2.0)
    assert budget.plan.first_plan == 543 and budget.plan.replans >= 1
    assert plans[-1] < 0.75 * 543  # the first plan would have overrun by about half
    assert abs(spent - 600) <= 0.03 * 600
    budget = budget_of(minutes=10)  # and a pace that speeds up buys more steps
    spent, plans = simulate(budget, monkeypatch, lambda spent: 2.0 if spent < 200 else 1.0)
    assert plans[-1] > 1.25 * plans[1]
    assert abs(spent - 600) <= 0.03 * 600
    budget = budget_of(minutes=10)  # a pace that improves all along, as larger sides bring
    spent, plans = simulate(budget, monkeypatch, lambda spent: 1.5 - spent / 1200)
    assert budget.plan.replans >= 3 and abs(spent - 600) <= 0.03 * 600


def test_never_more_than_train_epochs_and_a_short_budget_ends_inside_an_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    long = budget_of(minutes=1000, max_epochs=5)
    spent, plans = simulate(long, monkeypatch, lambda _spent: 1.0)
    assert plans == [150] and spent == pytest.approx(150 + 5 * 3)
    short = budget_of(minutes=0.25)  # 15 s: less than one 30-step epoch
    spent, plans = simulate(short, monkeypatch, lambda _spent: 1.0)
    assert plans[-1] < STEPS_PER_EPOCH and abs(spent - 15) <= 1.0


def test_every_rank_follows_the_plan_of_rank_0(monkeypatch: pytest.MonkeyPatch) -> None:
    follower = budget_of(minutes=10, agree=lambda _steps: 400)
    simulate(follower, monkeypatch, lambda _spent: 1.0)
    assert follower.plan.planned_steps == 400


def test_a_plan_saved_in_epochs_is_read_in_steps() -> None:
    saved = {"minutes": 120.0, "max_epochs": 30, "planned_epochs": 13, "first_plan": 12}
    plan = plan_from_saved(saved, steps_per_epoch=176)
    assert (plan.max_steps, plan.planned_steps, plan.first_plan) == (5280, 2288, 2112)
    assert plan_from_saved(vars(plan), 176) == plan


def test_a_budgeted_run_records_its_plan_and_resumes_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 12 steps an epoch (360 images / 30): the plan comes from timed steps inside epoch 1
    cfg = tiny_config(
        "optimized", tmp_path, "train.epochs=40", "train.time_budget_minutes=0.1",
        "data.batch_size=30", "early_stopping.enabled=false", "schedule.name=onecycle",
        "schedule.warmup_epochs=0",
    )  # fmt: skip
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["budget"]
    assert saved["first_plan"] is not None and 1 <= saved["planned_steps"] < 40 * 12
    assert "steps" in capsys.readouterr().out.split("time budget 0.1 min", 1)[1].split("\n")[0]
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    plan = summary["time_budget"]
    history = load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["history"]
    assert plan["minutes"] == 0.1 and plan["epochs_run"] == summary["epochs_run"]
    assert plan["steps_run"] == plan["planned_steps"] < 40 * 12
    assert plan["planned_epochs"] == math.ceil(plan["planned_steps"] / 12)
    # it ends near the budget; the exact end is the unit tests' above, since a tiny model's
    # pace on a shared machine is noisy. Only a machine so loaded that the ten timed steps
    # overrun the budget ends later, after those steps' epoch.
    assert summary["train_seconds"] <= 9.0 or plan["steps_run"] <= 12, (summary, history)
    assert plan["first_planned_steps"] == saved["first_plan"]  # the resumed run kept the plan
    # the schedule is laid out for the plan in force at the end
    schedule = LrSchedule(cfg.schedule, cfg.optim.lr, 1, 12, total_steps=plan["planned_steps"])
    assert history[-1]["lr"] == pytest.approx(schedule.lr(plan["planned_steps"] - 1))


def test_a_plan_with_no_time_left_still_takes_one_more_step() -> None:
    """Planning the run to end at the step just taken would leave that step at the lr of the
    plan before, never annealed; one more step ends it at the end of the plan in force."""
    budget = budget_of(minutes=1)
    budget.check(1.0, step=24, spent=70.0)  # already past the 60 s
    assert budget.plan.planned_steps == 25
