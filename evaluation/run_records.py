"""A finished run's records as a comparison reads them: config, summary, per-epoch metrics and
test-split scores.

A run scored on the test split (``evaluate.py --split test``, or the sweep's ``--evaluate
test``) has ``<run>/eval-test/metrics.json``, and ``eval-test-<tta>`` for each test-time
augmentation it was scored with. Only the kept ``best.pt`` (the epoch chosen on validation)
counts; a test score of any other checkpoint is an error.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utils.errors import UserError
from utils.run_log import TTA_MODES, eval_folder
from utils.yaml_file import excerpt, read_yaml


@dataclass(frozen=True)
class Kind:
    """What a record's value must be: ``accepts`` it, and ``expected`` says so in a message."""

    accepts: Callable[[Any], bool]
    expected: str


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


REAL = Kind(_is_real, "a number")
FINITE = Kind(lambda v: _is_real(v) and math.isfinite(v), "a finite number")
INTEGER = Kind(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
TEXT = Kind(lambda v: isinstance(v, str), "text")
BUDGET = Kind(
    lambda v: (
        v is None
        or (
            isinstance(v, dict)
            and FINITE.accepts(v.get("minutes"))
            and INTEGER.accepts(v.get("planned_epochs"))
            and (
                v.get("first_planned_epochs") is None or INTEGER.accepts(v["first_planned_epochs"])
            )
        )
    ),
    "null or {minutes, planned_epochs, first_planned_epochs}",
)

# What a comparison reads from each record, with the kind each value must be: the records are
# files a person can edit, and a string or a NaN would otherwise end in a traceback.
SUMMARY_SCHEMA = {
    "best_val_acc": FINITE,
    "best_val_loss": FINITE,
    "best_epoch": INTEGER,
    "epochs_run": INTEGER,
    "train_seconds": FINITE,
    "hardware": TEXT,
}
SUMMARY_OPTIONAL = {"precision": TEXT, "time_budget": BUDGET, "train_pflop": FINITE}
HISTORY_SCHEMA = {"epoch": INTEGER, "val_loss": REAL, "val_acc": REAL, "epoch_time_s": REAL}
TEST_SCHEMA = {"accuracy": FINITE, "loss": FINITE, "checkpoint": TEXT, "split": TEXT}
CONFIG_SCHEMA = {"name": TEXT}

# Config keys that say where a run ran and how it was driven, not what it trained: seeds of one
# recipe may differ in these (and in train.seed), and in nothing else. The hardware and the
# precision a run resolved to are columns of the comparison, which shows where runs differ.
RUN_SETTINGS = frozenset(
    {
        "name",
        "output_dir",
        "data.root",
        "data.download",
        "data.loader",
        "data.memory_limit_gb",
        "data.num_workers",
        "data.cache_dir",
        "data.eval_batch_size",
        "train.seed",
        "train.device",
        "train.precision",
        "train.channels_last",
        "train.layout_probe",
        "train.compile",
        "train.deterministic",
        "train.sync_every",
        "train.save_every_minutes",
        "train.tensorboard",
    }
)


def check_record(
    record: Any, where: str, schema: dict[str, Kind], optional: dict[str, Kind] | None = None
) -> None:
    """``record`` is a mapping with every key of ``schema`` (and of ``optional`` where present)
    holding its kind; else one UserError naming ``where`` (the run's file) and the key."""
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected a mapping, got {excerpt(record)}")
    if missing := [key for key in schema if key not in record]:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    for key, kind in {**schema, **(optional or {})}.items():
        if key in record and not kind.accepts(record[key]):
            raise UserError(f"{where}: {key} should be {kind.expected}, got {excerpt(record[key])}")


@dataclass
class RunResult:
    run_dir: Path
    group: str
    seed: int
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    test: dict[str, dict[str, float]]  # TTA mode -> the test split's accuracy and loss
    recipe: dict[str, Any] = field(default_factory=dict)  # the config's keys but RUN_SETTINGS

    @property
    def median_epoch_s(self) -> float:
        return statistics.median(row["epoch_time_s"] for row in self.history)


def load_run(run_dir: Path) -> RunResult:
    """A finished run's summary, per-epoch history and config, each checked against its schema;
    a record that cannot be read or holds a wrong value stops with one line naming the run's
    file and the key."""
    summary_path, config_path = run_dir / "summary.json", run_dir / "config.yaml"
    if not summary_path.is_file() or not config_path.is_file():
        raise UserError(f"{run_dir} is not a finished run (no summary.json or config.yaml)")
    config = read_yaml(config_path)  # the strict loader: bounded, one line on any failure
    check_record(config, str(config_path), CONFIG_SCHEMA)
    seed = config.get("train", {}).get("seed") if isinstance(config.get("train"), dict) else None
    if not INTEGER.accepts(seed):
        raise UserError(f"{config_path}: train.seed should be an integer, got {excerpt(seed)}")
    history = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").is_file() else []
    if not isinstance(history, list) or not history:
        raise UserError(f"{run_dir} has no per-epoch metrics (metrics.json missing or empty)")
    for index, row in enumerate(history):
        check_record(row, f"{run_dir}/metrics.json: row {index + 1}", HISTORY_SCHEMA)
    summary = read_json(summary_path)
    check_record(summary, str(summary_path), SUMMARY_SCHEMA, SUMMARY_OPTIONAL)
    group = run_group(config, config_path)
    test = test_scores(run_dir, summary)
    return RunResult(run_dir, group, seed, summary, history, test, training_recipe(config))


def training_recipe(config: dict[str, Any]) -> dict[str, Any]:
    """The config as dotted keys (``data.cutout``), less the RUN_SETTINGS: what two seeds of
    one recipe must share."""
    flat: dict[str, Any] = {}
    pending = [("", config)]
    while pending:
        prefix, section = pending.pop()
        for key, value in section.items():
            if isinstance(value, dict):
                pending.append((f"{prefix}{key}.", value))
            elif f"{prefix}{key}" not in RUN_SETTINGS:
                flat[f"{prefix}{key}"] = value
    return flat


def recipe_differences(first: RunResult, other: RunResult) -> dict[str, tuple[Any, Any]]:
    """The recipe keys that both runs record and set differently, with the two values. A key
    one record lacks is left out: the config gained it after that run was made."""
    shared = first.recipe.keys() & other.recipe.keys()
    return {
        key: (first.recipe[key], other.recipe[key])
        for key in sorted(shared)
        if first.recipe[key] != other.recipe[key]
    }


def run_group(config: dict[str, Any], config_path: Path) -> str:
    """The config's ``name``; with ``train.budget_pflop``, the budget too, so that one recipe
    at two budgets makes two groups and seeds are averaged within a budget only."""
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    budget = train.get("budget_pflop")
    if budget is None:
        return config["name"]
    if not FINITE.accepts(budget):
        raise UserError(
            f"{config_path}: train.budget_pflop should be a number, got {excerpt(budget)}"
        )
    return f"{config['name']} ({budget:g} PFLOP)"


def read_json(path: Path) -> Any:
    """A JSON file's content; one that is not readable JSON is one UserError naming it."""
    try:
        return json.loads(path.read_text())
    except (ValueError, OSError) as err:  # not JSON, not UTF-8, or not readable
        first_line = str(err).splitlines()[0][:120]
        raise UserError(f"{path} cannot be read ({type(err).__name__}: {first_line})") from None


def test_scores(run_dir: Path, summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The run's test-split accuracy and loss for each TTA mode it was scored with, checked to
    be those of its kept best epoch."""
    scores = {}
    for tta in TTA_MODES:
        path = run_dir / eval_folder("test", tta) / "metrics.json"
        if not path.is_file():
            continue
        metrics = read_json(path)
        check_record(metrics, str(path), TEST_SCHEMA)
        checkpoint = Path(metrics["checkpoint"])
        scored = (metrics["split"], scored_tta(metrics), checkpoint.name, metrics.get("epoch"))
        scores[tta] = {"acc": metrics["accuracy"], "loss": metrics["loss"]}
        # the folder's name says what it holds; a rename, an --output-dir or an older
        # evaluate.py (which wrote every TTA mode into eval-test) could make it say otherwise
        kept = ("test", tta, "best.pt", summary["best_epoch"])
        if scored != kept or checkpoint.parent.name != run_dir.name:
            raise UserError(
                f"{path} scores the {scored[0]} split (TTA {scored[1]}) with {checkpoint} at "
                f"epoch {scored[3]}, not the test split (TTA {tta}) with this run's kept "
                f"best.pt of epoch {summary['best_epoch']}: score it with python evaluate.py "
                f"--ckpt {run_dir / 'best.pt'} --split test --tta {tta}"
            )
    return scores


def scored_tta(metrics: dict[str, Any]) -> str:
    """The TTA mode of an evaluation's metrics; older ones recorded only ``flip_tta``."""
    return metrics.get("tta", "flip" if metrics.get("flip_tta") else "none")
