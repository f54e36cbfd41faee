"""Run a list of trainings one after another; a killed sweep continues where it stopped.

    python -m experiments.sweep experiments/headline.yaml --data-root ../shared/data/cifar10-jpg

A plan is YAML: ``runs: [{name, config, set: [key=value, ...]}, ...]``. Each run trains into
``<output_dir>/<name>``. A run with ``summary.json`` is done and skipped; a run with ``last.pt``
is resumed with ``train.py --resume``; any other is started. Runs go in sequence because two
trainings on the same CPU cores slow each other down far more than twice.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


@dataclass
class PlannedRun:
    name: str
    config: str
    overrides: list[str] = field(default_factory=list)


def read_plan(path: Path) -> list[PlannedRun]:
    raw = yaml.safe_load(path.read_text())
    runs = [PlannedRun(r["name"], r["config"], list(r.get("set", []))) for r in raw["runs"]]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise SystemExit(f"{path}: run names must be unique")
    return runs


def train_command(run: PlannedRun, run_dir: Path, data_root: str | None) -> list[str]:
    """The train.py call that starts, or resumes, ``run``."""
    if (run_dir / "last.pt").is_file():
        command = [sys.executable, str(REPO / "train.py"), "--resume", str(run_dir)]
    else:
        command = [sys.executable, str(REPO / "train.py"), "--config", run.config]
        command += ["--run-name", run.name, "--set", f"output_dir={run_dir.parent}"]
        for assignment in run.overrides:
            command += ["--set", assignment]
    if data_root:
        command += ["--data-root", data_root]
    return command


def run_sweep(plan: list[PlannedRun], output_dir: Path, data_root: str | None) -> int:
    """Run every unfinished run of ``plan`` in order; returns the number of failures."""
    failures = 0
    for index, run in enumerate(plan, 1):
        run_dir = output_dir / run.name
        if (run_dir / "summary.json").is_file():
            print(f"[{index}/{len(plan)}] {run.name}: done, skipped", flush=True)
            continue
        command = train_command(run, run_dir, data_root)
        print(f"[{index}/{len(plan)}] {run.name}: {' '.join(command[1:])}", flush=True)
        if subprocess.run(command, cwd=REPO).returncode != 0:
            failures += 1
            print(f"[{index}/{len(plan)}] {run.name}: FAILED", flush=True)
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("plan", type=Path, help="a sweep plan (YAML)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--data-root", help="passed to every train.py call")
    args = parser.parse_args()
    failures = run_sweep(read_plan(args.plan), args.output_dir, args.data_root)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
