"""Run a list of trainings one after another; a killed sweep continues where it stopped.

    python -m experiments.sweep experiments/headline.yaml --data-root ../shared/data/cifar10-jpg
    python -m experiments.sweep experiments/headline.yaml --only optimized-no-wd   # one row
    python -m experiments.sweep experiments/headline.yaml --print   # the train.py commands
    python -m experiments.sweep experiments/headline.yaml --set train.precision=fp32   # every row
    python -m experiments.sweep experiments/headline.yaml --archive docs/results/runs  # records
    python -m experiments.sweep experiments/headline.yaml --evaluate test --evaluate test:flip

A plan is YAML: ``runs: [{name, config, set: [key=value, ...]}, ...]``. Each run trains into
``<output_dir>/<name>``. A run with ``summary.json`` is done and skipped; a run with ``last.pt``
is resumed with ``train.py --resume``; any other is started. Runs go in sequence because two
trainings on the same CPU cores slow each other down far more than twice. Ctrl-C or SIGTERM
stops the training at the next step with a saved position, and the sweep with it: run the same
command again to continue.

``--evaluate SPLIT[:TTA]`` scores each finished run's ``best.pt`` with ``evaluate.py`` into
``<run>/eval-<split>[-<tta>]``, once: a run whose folder already holds ``metrics.json`` and
``report.html`` is not scored again, so a test split is scored once per finished run however
often the sweep is run.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.archive import archive_run
from utils.cli import run_cli
from utils.errors import UserError
from utils.run_log import EVAL_SPLITS, TTA_MODES, eval_folder
from utils.run_names import check_run_name, run_directory
from utils.yaml_file import excerpt, read_yaml_file

REPO = Path(__file__).resolve().parent.parent
PLAN_KEYS = {"name", "config", "set"}
STOPPED_BY_SIGNAL = {128 + signal.SIGINT, 128 + signal.SIGTERM}


@dataclass
class PlannedRun:
    name: str
    config: str
    overrides: list[str] = field(default_factory=list)


def read_plan(path: Path) -> list[PlannedRun]:
    """The runs of a plan file, read with the strict YAML loader (``utils/yaml_file.py``); a
    missing file, a malformed entry or a name that is not one folder name stops with a line."""
    if not path.is_file():
        raise UserError(f"plan {path} not found")
    raw = read_yaml_file(path)
    entries = raw.get("runs") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: expected 'runs:' with a list of {{name, config, set}}")
    runs = [planned_run(entry, path) for entry in entries]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: run names must be unique")
    return runs


def planned_run(entry: object, path: Path) -> PlannedRun:
    """One entry of a plan: a name, a config and optionally ``set``, a list of KEY=VALUE."""
    if not isinstance(entry, dict) or not {"name", "config"} <= entry.keys():
        raise UserError(f"{path}: every run needs a name and a config, got {excerpt(entry)}")
    name = check_run_name(str(entry["name"]), f"{path}: run {excerpt(entry['name'])}")
    if unknown := sorted(map(str, entry.keys() - PLAN_KEYS)):
        raise UserError(
            f"{path}: run {name}: unknown key {excerpt(unknown[0])} (allowed: name, config, set)"
        )
    overrides = entry.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(
            f"{path}: run {name}: 'set' must be a list of KEY=VALUE, got {excerpt(overrides)}"
        )
    return PlannedRun(name, str(entry["config"]), overrides)


def select_runs(plan: list[PlannedRun], only: list[str] | None) -> list[PlannedRun]:
    """The runs named in ``only`` (all when None), in plan order; an unknown name is an error."""
    if not only:
        return plan
    unknown = sorted(set(only) - {run.name for run in plan})
    if unknown:
        known = ", ".join(run.name for run in plan)
        raise UserError(f"not in the plan: {', '.join(unknown)} (the plan has {known})")
    return [run for run in plan if run.name in only]


def with_overrides(plan: list[PlannedRun], assignments: list[str]) -> list[PlannedRun]:
    """Every run with ``assignments`` after its own overrides, so they win: e.g. the precision
    a plan pins, on a machine where it is slow. A run being resumed keeps its stored config."""
    return [replace(run, overrides=[*run.overrides, *assignments]) for run in plan]


def config_arguments(run: PlannedRun, output_dir: Path) -> list[str]:
    """train.py's arguments that start ``run`` from its config, into ``output_dir/<name>``."""
    arguments = ["--config", run.config, "--run-name", run.name]
    arguments += ["--set", f"output_dir={output_dir}"]
    for assignment in run.overrides:
        arguments += ["--set", assignment]
    return arguments


def train_command(run: PlannedRun, run_dir: Path, data_root: str | None) -> list[str]:
    """The train.py call that starts, or resumes, ``run``."""
    command = [sys.executable, str(REPO / "train.py")]
    if (run_dir / "last.pt").is_file():
        command += ["--resume", str(run_dir)]
    else:
        command += config_arguments(run, run_dir.parent)
    if data_root:
        command += ["--data-root", data_root]
    return command


@dataclass(frozen=True)
class Evaluation:
    split: str
    tta: str = "none"

    @classmethod
    def parse(cls, text: str) -> Evaluation:
        """``test`` or ``test:flip-shift``; an unknown split or mode is an error."""
        split, _, tta = text.partition(":")
        if split not in EVAL_SPLITS or (tta or "none") not in TTA_MODES:
            raise UserError(
                f"--evaluate {text}: expected SPLIT[:TTA] with SPLIT one of "
                f"{', '.join(EVAL_SPLITS)} and TTA one of {', '.join(TTA_MODES)}"
            )
        return cls(split, tta or "none")

    def command(self, run_dir: Path, data_root: str | None) -> list[str]:
        """The evaluate.py call that scores the run's ``best.pt``."""
        command = [sys.executable, str(REPO / "evaluate.py"), "--ckpt", str(run_dir / "best.pt")]
        command += ["--split", self.split, "--tta", self.tta]
        return command + (["--data-root", data_root] if data_root else [])

    def done(self, run_dir: Path) -> bool:
        """Scored already: evaluate.py writes report.html last, after metrics.json."""
        folder = run_dir / eval_folder(self.split, self.tta)
        return (folder / "metrics.json").is_file() and (folder / "report.html").is_file()


def run_child(command: list[str]) -> int:
    """Run one train.py or evaluate.py to its end and return its exit code. Ctrl-C reaches it
    from the terminal and SIGTERM is passed on, so a training saves where it stopped; the sweep
    meanwhile waits for it rather than die first (which, for Ctrl-C, would kill it before its
    save)."""
    child = subprocess.Popen(command, cwd=REPO)

    def pass_on(signum: int, frame: object) -> None:
        if signum == signal.SIGTERM:  # Ctrl-C already went to the whole foreground group
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_step(label: str, command: list[str]) -> bool:
    """Run one child process of the sweep; False if it failed. A child stopped by Ctrl-C or
    SIGTERM stops the sweep too, with the child's exit code."""
    print(f"{label}: {' '.join(command[1:])}", flush=True)
    code = run_child(command)
    if code in STOPPED_BY_SIGNAL:
        print(f"{label}: stopped; run again to continue")
        sys.exit(code)
    if code != 0:
        print(f"{label}: FAILED", flush=True)
    return code == 0


def run_sweep(
    plan: list[PlannedRun],
    output_dir: Path,
    data_root: str | None,
    archive: Path | None = None,
    evaluations: tuple[Evaluation, ...] = (),
) -> int:
    """Run every unfinished run of ``plan`` in order, then its ``evaluations`` not yet made;
    returns the number of failures. With ``archive``, each finished run's records are copied
    there (``experiments/archive.py``)."""
    failures = 0
    for index, run in enumerate(plan, 1):
        label = f"[{index}/{len(plan)}] {run.name}"
        run_dir = run_directory(output_dir, run.name, f"run {run.name}")
        if (run_dir / "summary.json").is_file():
            print(f"{label}: done, skipped", flush=True)
        elif not run_step(label, train_command(run, run_dir, data_root)):
            failures += 1
            continue
        for evaluation in evaluations:
            if not evaluation.done(run_dir):
                failures += not run_step(label, evaluation.command(run_dir, data_root))
        if archive is not None:
            archive_run(run_dir, archive)
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("plan", type=Path, help="a sweep plan (YAML)")
    parser.add_argument("--output-dir", type=Path, default=Path("checkpoints"))
    parser.add_argument("--data-root", help="passed to every train.py call")
    parser.add_argument(
        "--archive", type=Path, metavar="DIR", help="copy each finished run's records into DIR"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this row (repeatable)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override for every row, after the plan's own (repeatable)",
    )
    parser.add_argument(
        "--evaluate",
        action="append",
        default=[],
        type=Evaluation.parse,
        metavar="SPLIT[:TTA]",
        help="score each finished run's best.pt on SPLIT (with TTA), once (repeatable)",
    )
    parser.add_argument(
        "--print", action="store_true", help="print the train.py commands instead of running"
    )
    args = parser.parse_args()
    plan = with_overrides(select_runs(read_plan(args.plan), args.only), args.set)
    if args.print:
        for run in plan:  # as run from the repository root, whatever has been done so far
            extra = ["--data-root", args.data_root] if args.data_root else []
            arguments = config_arguments(run, args.output_dir) + extra
            print(shlex.join(["python", "train.py", *arguments]))
        return
    archive = args.archive.resolve() if args.archive else None
    output_dir = args.output_dir.resolve()
    failures = run_sweep(plan, output_dir, args.data_root, archive, tuple(args.evaluate))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    run_cli(main)
