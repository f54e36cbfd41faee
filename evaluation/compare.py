"""Compare finished runs: a results table (markdown and JSON) and overlay plots.

Runs are grouped by their config's ``name`` (seeds of one recipe form a group), and each
group is reported as mean ± standard deviation over its runs; a group whose runs differ in more
than their seed and ``run_records.RUN_SETTINGS`` is refused, as its mean would mix recipes.
A group named after another plus a suffix (``optimized-no-wd`` after ``optimized``), at the
same budget where runs train to one, is a variation of it: its row also gives the change in
val acc and val loss against that parent, which makes an ablation table.

Runs scored on the test split add test columns (``evaluation/run_records.py`` reads them).

Groups whose runs are no longer at hand can join from an earlier results JSON (``reference``):
their rows enter the table and the changes, marked as such, but not the plots. A group that has
runs here is measured from them alone, replacing its reference row. The reference may be the
very file being written: its kept rows are carried forward, still marked.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evaluation.compare_plots import plot_accuracy_vs_compute, plot_overlay, plot_scores
from evaluation.html_report import write_comparison_report
from evaluation.results_table import footnotes, markdown_table, table_cells
from evaluation.run_records import RunResult, load_run, recipe_differences
from utils.errors import UserError
from utils.run_log import TTA_MODES
from utils.safe_write import write_text_atomic


def _distinct(values: Iterable[str]) -> str:
    """The different values of a group's runs, in order: one, unless its seeds ran apart."""
    return " / ".join(dict.fromkeys(v for v in values if v))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise_groups(runs: list[RunResult]) -> list[dict[str, Any]]:
    """One row per group: metrics as mean and std over its runs, in first-seen order."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    rows = []
    for group, members in groups.items():
        check_one_recipe(group, members)
        acc = _mean_std([100 * m.summary["best_val_acc"] for m in members])
        loss = _mean_std([m.summary["best_val_loss"] for m in members])
        peak = _mean_std([100 * max(row["val_acc"] for row in m.history) for m in members])
        rows.append(
            {
                "group": group,
                "seeds": [m.seed for m in members],
                "val_acc_mean": round(acc[0], 2),
                "val_acc_std": round(acc[1], 2),
                "val_loss_mean": round(loss[0], 4),
                "val_loss_std": round(loss[1], 4),
                "max_val_acc_mean": round(peak[0], 2),
                "max_val_acc_std": round(peak[1], 2),
                "best_epoch": [m.summary["best_epoch"] for m in members],
                "epochs_run": [m.summary["epochs_run"] for m in members],
                "median_epoch_s": round(statistics.median(m.median_epoch_s for m in members), 1),
                "wall_time_min": round(
                    statistics.fmean(m.summary["train_seconds"] for m in members) / 60, 1
                ),
                **group_compute(members),
                # " x1" (one process) is left out, as older runs did not write it
                "hardware": _distinct(m.summary["hardware"].removesuffix(" x1") for m in members),
                "precision": _distinct(m.summary.get("precision", "") for m in members),
                "runs": [str(m.run_dir) for m in members],
                **group_test_scores(members),
                **group_time_budgets(members),
            }
        )
    return rows


def check_one_recipe(group: str, members: list[RunResult]) -> None:
    """A group's runs are seeds of one recipe, or its mean and std mean nothing: a variant
    whose config kept its parent's ``name`` stops here with the keys that differ."""
    for other in members[1:]:
        if differences := recipe_differences(members[0], other):
            changed = ", ".join(f"{key} ({a!r} / {b!r})" for key, (a, b) in differences.items())
            raise UserError(
                f"{members[0].run_dir} and {other.run_dir} are both in group {group!r} but "
                f"train different recipes: {changed}. Give the variant a name of its own "
                "(train it with --set name=..., or edit name: in its config.yaml)"
            )


def group_compute(members: list[RunResult]) -> dict[str, Any]:
    """``train_pflop``: the mean training compute of the group's runs, where each recorded it
    (``summary.json``; runs made before it was recorded have none)."""
    pflop = [m.summary.get("train_pflop") for m in members]
    if None in pflop:
        return {}
    return {"train_pflop": round(statistics.fmean(pflop), 3)}


def group_time_budgets(members: list[RunResult]) -> dict[str, Any]:
    """``time_budget``: each run's budget and plan (``summary.json``'s ``time_budget``), where
    any run of the group trained to one; None for a run that did not."""
    budgets = [m.summary.get("time_budget") for m in members]
    return {"time_budget": budgets} if any(budgets) else {}


def group_test_scores(members: list[RunResult]) -> dict[str, Any]:
    """``test``: for each TTA mode that every run of the group was scored with, its test
    accuracy (%) and loss as mean and std. A group only some of whose runs were scored has no
    test figure but ``test_runs_scored``, which the table's notes report."""
    scored = sum("none" in m.test for m in members)
    if 0 < scored < len(members):
        return {"test_runs_scored": scored}
    test = {}
    for tta in TTA_MODES:
        if not all(tta in m.test for m in members):
            continue
        acc = _mean_std([100 * m.test[tta]["acc"] for m in members])
        loss = _mean_std([m.test[tta]["loss"] for m in members])
        test[tta] = {
            "acc_mean": round(acc[0], 2),
            "acc_std": round(acc[1], 2),
            "loss_mean": round(loss[0], 4),
            "loss_std": round(loss[1], 4),
        }
    return {"test": test} if test else {}


DERIVED_KEYS = ("vs", "delta_val_acc", "delta_val_loss", "delta_test_acc")
ROW_KEYS = {  # what a reference row needs for the table
    "group",
    "seeds",
    "val_acc_mean",
    "val_acc_std",
    "val_loss_mean",
    "val_loss_std",
    "max_val_acc_mean",
    "max_val_acc_std",
    "best_epoch",
    "epochs_run",
    "median_epoch_s",
    "wall_time_min",
    "hardware",
}


def load_reference_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results JSON that ``compare_runs`` wrote earlier."""
    if not path.is_file():
        raise UserError(f"reference {path} not found")
    try:
        rows = json.loads(path.read_text())
    except ValueError as err:  # not JSON, or not text
        raise UserError(f"reference {path} is not JSON: {err}") from None
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and r.keys() >= ROW_KEYS for r in rows
    ):
        raise UserError(f"reference {path} is not a results JSON written by compare.py")
    return rows


def merge_reference(
    reference: list[dict[str, Any]], measured: list[dict[str, Any]], source: str
) -> list[dict[str, Any]]:
    """The reference rows in their order, each replaced by the measured row of its group where
    there is one, then the other measured rows. A kept reference row is marked ``from`` its
    source file and loses its old changes, which are worked out again."""
    by_group = {row["group"]: row for row in measured}
    merged = []
    for row in reference:
        if row["group"] in by_group:
            merged.append(by_group.pop(row["group"]))
        else:
            kept = {k: v for k, v in row.items() if k not in DERIVED_KEYS}
            merged.append({**kept, "from": row.get("from", source)})
    return merged + list(by_group.values())


def parent_group(group: str, groups: list[str]) -> str | None:
    """The group ``group`` varies: the longest other name it extends with a dash, at the same
    budget (``budget-cutout (4.5 PFLOP)`` varies ``budget (4.5 PFLOP)``, not ``budget (0.75
    PFLOP)``; ``run_records.run_group`` writes the budget)."""
    name, budget = split_budget(group)
    parents = [g for g in groups if split_budget(g)[1] == budget]
    parents = [g for g in parents if name.startswith(split_budget(g)[0] + "-")]
    return max(parents, key=len, default=None)


def split_budget(group: str) -> tuple[str, str]:
    """A group's config name and its budget suffix (``" (4.5 PFLOP)"``, or "" for none)."""
    name, sep, budget = group.rpartition(" (")
    if sep and budget.endswith(" PFLOP)"):
        return name, sep + budget
    return group, ""


def add_deltas(rows: list[dict[str, Any]]) -> None:
    """Give each variation row its change in val acc (points) and val loss against its parent."""
    by_group = {r["group"]: r for r in rows}
    for row in rows:
        parent = parent_group(row["group"], list(by_group))
        if parent is None:
            continue
        row["vs"] = parent
        row["delta_val_acc"] = round(row["val_acc_mean"] - by_group[parent]["val_acc_mean"], 2)
        row["delta_val_loss"] = round(row["val_loss_mean"] - by_group[parent]["val_loss_mean"], 4)
        test, parent_test = (r.get("test", {}).get("none") for r in (row, by_group[parent]))
        if test and parent_test:
            row["delta_test_acc"] = round(test["acc_mean"] - parent_test["acc_mean"], 2)


def compare_runs(
    run_dirs: list[Path],
    output_dir: Path,
    prefix: str = "results",
    reference: Path | None = None,
) -> dict[str, Any]:
    """Write ``<prefix>.md``, ``<prefix>.json``, two overlay plots, a plot of each run's val and
    test accuracy (``<prefix>_scores.png``, when some run was scored on the test split), one of
    accuracy against training PFLOP (``<prefix>_compute.png``, when some run recorded it) and
    ``<prefix>_report.html`` (the table and plots on one page, linking to each run's reports)
    into ``output_dir``;
    ``reference`` is an earlier results JSON whose groups join the table (see the module doc)."""
    runs = [load_run(d) for d in run_dirs]
    rows = summarise_groups(runs)
    if reference is not None:
        rows = merge_reference(load_reference_rows(reference), rows, str(reference))
    add_deltas(rows)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output_dir / f"{prefix}.md", markdown_table(rows))
    write_text_atomic(output_dir / f"{prefix}.json", json.dumps(rows, indent=2) + "\n")
    plots = [
        (
            plot_overlay(
                runs, "val_loss", "validation loss", output_dir / f"{prefix}_val_loss.png"
            ),
            "validation loss by epoch",
        ),
        (
            plot_overlay(
                runs, "val_acc", "validation accuracy (%)", output_dir / f"{prefix}_val_acc.png"
            ),
            "validation accuracy by epoch",
        ),
    ]
    if any("train_pflop" in run.summary for run in runs):
        compute = plot_accuracy_vs_compute(runs, output_dir / f"{prefix}_compute.png")
        plots.append((compute, "accuracy against training compute"))
    if any(run.test for run in runs):
        scores = plot_scores(runs, output_dir / f"{prefix}_scores.png")
        plots.append((scores, "each run's val and test accuracy"))
    write_comparison_report(
        output_dir / (f"{prefix}_report.html" if prefix else "report.html"),
        table_cells(rows),
        footnotes(rows),
        plots,
        [[Path(run) for run in row["runs"]] for row in rows],
    )
    return {"rows": rows, "table": markdown_table(rows), "plots": [png for png, _ in plots]}
