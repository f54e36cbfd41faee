"""train.time_budget_minutes: plan the epochs that fit, re-plan once, end within the budget."""

import json
from pathlib import Path

import pytest

import training.budget
from tests.conftest import tiny_config
from training.budget import BudgetPlan, TimeBudget
from training.schedule import LrSchedule
from training.trainer import fit
from utils.checkpoint import load_checkpoint


def test_plan_from_timed_steps_fits_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]  # a step takes one second
    monkeypatch.setattr(training.budget.time, "perf_counter", lambda: now[0])
    budget = TimeBudget.new(minutes=10, max_epochs=50, steps_per_epoch=30, val_share=0.3)
    planned = []
    for step in range(1, 12):
        now[0] += 1.0
        planned.append(budget.after_step(step, spent=0.0))
    assert planned.count(True) == 1  # planned once, after the warm-up and the timed steps
    # 1 s a step, 30 steps, validation 0.3 x 1/3 of that: 33 s an epoch; 600 s fit 18
    assert budget.plan.estimated_epoch_s == pytest.approx(33.0)
    assert budget.plan.planned_epochs == budget.plan.first_plan == 18
    assert not budget.after_epoch(34.0, spent=34.0, done=1)  # within 10%: no re-plan
    assert not budget.after_epoch(68.0, spent=102.0, done=2)  # only the first epoch counts
    assert budget.plan.planned_epochs == 18 and not budget.plan.replanned
    slow = TimeBudget(BudgetPlan(10, 50, 18, 18, 33.0), 30, 0.3)
    assert slow.after_epoch(60.0, spent=60.0, done=1)  # 82% over: re-plan from the epoch
    assert slow.plan.planned_epochs == 10 and slow.plan.replanned and slow.plan.first_plan == 18
    assert not slow.after_epoch(120.0, spent=180.0, done=2)  # only once
    assert slow.next_epoch_fits(60.0, spent=540.0) and not slow.next_epoch_fits(60.0, 541.0)


def test_never_more_than_train_epochs_nor_fewer_than_one() -> None:
    budget = TimeBudget.new(minutes=1000, max_epochs=5, steps_per_epoch=10, val_share=0.1)
    assert budget.fit_epochs(1.0, spent=0.0, done=0) == 5
    assert budget.fit_epochs(1e9, spent=0.0, done=0) == 1


def test_a_budgeted_run_records_its_plan_and_resumes_with_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 12 steps an epoch (360 images / 30): the plan comes from timed steps inside epoch 1
    cfg = tiny_config(
        "optimized", tmp_path, "train.epochs=40", "train.time_budget_minutes=0.15",
        "data.batch_size=30", "early_stopping.enabled=false", "schedule.name=onecycle",
        "schedule.warmup_epochs=0",
    )  # fmt: skip
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["budget"]
    assert saved["first_plan"] is not None and 1 <= saved["planned_epochs"] < 40
    assert f"epoch   1/{saved['planned_epochs']} |" in capsys.readouterr().out  # not of 40
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    plan = summary["time_budget"]
    assert plan["minutes"] == 0.15 and plan["epochs_run"] == summary["epochs_run"]
    assert plan["epochs_run"] <= plan["planned_epochs"] < 40
    # the last epoch started only if it fitted: the budget is overrun by less than one epoch
    history = load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["history"]
    before_last = sum(row["epoch_time_s"] for row in history[:-1])
    assert before_last <= 0.15 * 60
    # the schedule is laid out for the plan in force: the first one in epoch 1, the final after
    plan_of_last = plan["planned_epochs"] if len(history) > 1 else plan["first_planned_epochs"]
    schedule = LrSchedule(cfg.schedule, cfg.optim.lr, plan_of_last, 12)
    assert history[-1]["lr"] == pytest.approx(schedule.lr(12 * len(history) - 1))


def test_a_budget_shorter_than_an_epoch_says_so() -> None:
    short = TimeBudget(BudgetPlan(1, 50, 1, 1, 90.0), 30, 0.3)  # 1 minute, 1.5-minute epochs
    assert "shorter than one epoch (about 1.50 min" in short.overrun_warning()
    assert TimeBudget(BudgetPlan(10, 50, 6, 6, 90.0), 30, 0.3).overrun_warning() is None
