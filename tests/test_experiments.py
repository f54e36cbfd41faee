"""The sweep runner and the compare command, on tiny synthetic runs."""

import json
from pathlib import Path

import pytest

from evaluation.compare import compare_runs
from experiments.sweep import PlannedRun, read_plan, run_sweep, train_command
from utils.config import load_config

TINY = ["data.synthetic_samples=300", "train.epochs=2", "data.batch_size=50"]


def test_sweep_runs_resumes_and_skips(tmp_path: Path) -> None:
    plan = [
        PlannedRun("smoke-s0", "smoke.yaml", [*TINY, "train.seed=0"]),
        PlannedRun("smoke-s1", "smoke.yaml", [*TINY, "train.seed=1"]),
    ]
    assert run_sweep(plan, tmp_path, None) == 0
    for name in ("smoke-s0", "smoke-s1"):
        assert json.loads((tmp_path / name / "summary.json").read_text())["epochs_run"] == 2
    # A run killed before finishing has last.pt but no summary.json: it is resumed, not restarted.
    (tmp_path / "smoke-s1" / "summary.json").unlink()
    assert "--resume" in train_command(plan[1], tmp_path / "smoke-s1", None)
    assert "--resume" not in train_command(plan[0], tmp_path / "new-run", "data")
    mtime = (tmp_path / "smoke-s0" / "last.pt").stat().st_mtime_ns
    assert run_sweep(plan, tmp_path, None) == 0
    assert (tmp_path / "smoke-s0" / "last.pt").stat().st_mtime_ns == mtime  # skipped
    assert (tmp_path / "smoke-s1" / "summary.json").is_file()

    result = compare_runs([tmp_path / "smoke-s0", tmp_path / "smoke-s1"], tmp_path / "out")
    (row,) = result["rows"]
    accs = [
        100 * json.loads((tmp_path / n / "summary.json").read_text())["best_val_acc"]
        for n in ("smoke-s0", "smoke-s1")
    ]
    assert row["group"] == "smoke" and row["seeds"] == [0, 1]
    assert row["val_acc_mean"] == pytest.approx(sum(accs) / 2, abs=0.01)
    assert row["max_val_acc_mean"] >= row["val_acc_mean"]
    for name in ("results.md", "results.json", "results_val_loss.png", "results_val_acc.png"):
        assert (tmp_path / "out" / name).is_file()
    assert "| smoke | 0, 1 |" in (tmp_path / "out" / "results.md").read_text()


def test_headline_plan_covers_seeds_and_ablations() -> None:
    plan = read_plan(Path(__file__).parent.parent / "experiments" / "headline.yaml")
    names = {run.name for run in plan}
    assert {"baseline-s0", "baseline-s2", "optimized-s0", "optimized-s2"} <= names
    assert len(names) == 14


@pytest.mark.parametrize(
    "plan", sorted((Path(__file__).parent.parent / "experiments").glob("*.yaml"))
)
def test_every_planned_recipe_passes_the_config_checks(plan: Path) -> None:
    for run in read_plan(plan):
        load_config(run.config, run.overrides)
