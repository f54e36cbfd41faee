"""Keep the records of finished runs in the repository, without their weights.

    python -m experiments.archive checkpoints/baseline-es checkpoints/baseline-aug

A run directory holds checkpoints (about 90 MB each) beside a few small text files: the
resolved config, the summary, the per-epoch metrics and the metrics of its evaluations.
``compare.py`` reads only the config, the summary, ``metrics.json`` (``metrics.csv`` is copied
for people) and ``eval-*/metrics.json`` (the test columns), so once these are in the repository
every results table and plot can be rebuilt on any machine, after the checkpoints are gone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import run_cli
from utils.errors import UserError
from utils.safe_write import copy_atomic

RECORD_FILES = ("config.yaml", "summary.json", "metrics.json", "metrics.csv")


def archive_run(run_dir: Path, destination: Path) -> Path:
    """Copy the record files of the finished run ``run_dir`` into ``destination/<run name>``."""
    missing = [name for name in RECORD_FILES if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"{run_dir} is not a finished run: it has no {', '.join(missing)}")
    target = destination / run_dir.name
    if target.resolve() == run_dir.resolve():
        raise UserError(f"{run_dir} is already in {destination}")
    target.mkdir(parents=True, exist_ok=True)
    for name in RECORD_FILES:
        copy_atomic(run_dir / name, target / name)
    for metrics in run_dir.glob("eval-*/metrics.json"):
        copy_atomic(metrics, target / metrics.parent.name / metrics.name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument(
        "--to", type=Path, default=Path("docs/results/runs"), help="default: docs/results/runs"
    )
    args = parser.parse_args()
    names = [run_dir.name for run_dir in args.runs]
    if len(set(names)) != len(names):
        raise UserError(f"runs with the same name would overwrite each other: {names}")
    for run_dir in args.runs:
        print(f"{run_dir} -> {archive_run(run_dir, args.to)}")


if __name__ == "__main__":
    run_cli(main)
