"""The comparison's results table as text cells, in markdown, and its footnotes.

A row is one group of runs as ``evaluation.compare.summarise_groups`` makes it: val measures
of the kept ``best.pt`` as mean ± std over the seeds, test measures where the runs were scored
on the test split, and a variation's change against its parent.
"""

from __future__ import annotations

from typing import Any

from utils.run_log import TTA_MODES

TABLE_HEADER = [
    "run",
    "seeds",
    "val acc (%)",
    "val loss",
    "best epoch",
    "max val acc (%)",
    "epochs run",
    "median epoch (s)",
    "wall time (min)",
]


def _spread(mean: float, std: float, spread: bool, digits: int) -> str:
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if spread else "")


def test_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(TTA mode, measure, header) of the test columns some row has: accuracy and loss as
    trained, then accuracy with each test-time augmentation."""
    modes = [m for m in TTA_MODES if any(m in r.get("test", {}) for r in rows)]
    columns = []
    for mode in modes:
        if mode == "none":
            columns += [(mode, "acc", "test acc (%)"), (mode, "loss", "test loss")]
        else:
            columns.append((mode, "acc", f"test acc, {mode} TTA (%)"))
    return columns


def _test_cell(row: dict[str, Any], mode: str, measure: str) -> str:
    scores = row.get("test", {}).get(mode)
    if scores is None:
        return ""
    mean, std = scores[f"{measure}_mean"], scores[f"{measure}_std"]
    return _spread(mean, std, len(row["seeds"]) > 1, 2 if measure == "acc" else 4)


def _budget_cell(row: dict[str, Any]) -> str:
    """Each run's budget and the epochs planned for it: first from timed steps, then, where
    the budget planned again, the final plan (``120 min: 13 → 15``)."""
    cells = []
    for budget in row.get("time_budget", []):
        if budget is None:
            cells.append("none")
            continue
        first, final = budget["first_planned_epochs"], budget["planned_epochs"]
        plan = str(final) if first in (None, final) else f"{first} → {final}"
        cells.append(f"{budget['minutes']:g} min: {plan}")
    return ", ".join(cells)


def table_cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The results table as text cells, the header first: what the markdown and the HTML show.

    Val acc and loss are those of the best-val-loss epoch (the kept ``best.pt``); max val acc is
    the highest accuracy of any epoch, for comparison with figures reported that way. Test
    columns, where runs were scored on the test split, score that same ``best.pt``. Where a
    run trained to a time budget, a column gives the budget and the epochs planned for it."""
    with_deltas = any("vs" in r for r in rows)
    with_budgets = any("time_budget" in r for r in rows)
    with_compute = any("train_pflop" in r for r in rows)
    tests = test_columns(rows)
    header = TABLE_HEADER[:4] + [h for _, _, h in tests] + TABLE_HEADER[4:]
    header += ["training PFLOP"] if with_compute else []
    header += ["time budget: planned epochs"] if with_budgets else []
    change = "change in val acc / loss" + ("; test acc" if tests else "")
    cells = [header + ([change] if with_deltas else [])]
    for r in rows:
        spread = len(r["seeds"]) > 1
        cells.append(
            [
                r["group"] + (" †" if "from" in r else ""),
                ", ".join(map(str, r["seeds"])),
                _spread(r["val_acc_mean"], r["val_acc_std"], spread, 2),
                _spread(r["val_loss_mean"], r["val_loss_std"], spread, 4),
                *(_test_cell(r, mode, measure) for mode, measure, _ in tests),
                ", ".join(map(str, r["best_epoch"])),
                _spread(r["max_val_acc_mean"], r["max_val_acc_std"], spread, 2),
                ", ".join(map(str, r["epochs_run"])),
                str(r["median_epoch_s"]),
                str(r["wall_time_min"]),
            ]
            + ([f"{r['train_pflop']:g}" if "train_pflop" in r else ""] if with_compute else [])
            + ([_budget_cell(r)] if with_budgets else [])
            + ([_change(r)] if with_deltas else [])
        )
    return cells


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The results table (see ``table_cells``) in markdown, with its footnotes."""
    header, *body = table_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n\n" + footnotes(rows)


def footnotes(rows: list[dict[str, Any]]) -> str:
    """Which machine and precision each row ran with (all rows, when they share one), which
    groups were scored on the test split only in part, and where the reference rows come
    from."""
    setups: dict[str, list[str]] = {}
    for r in rows:
        setup = r["hardware"] + (f", {r['precision']}" if r.get("precision") else "")
        setups.setdefault(setup, []).append(r["group"])
    if len(setups) == 1:
        lines = [f"Hardware: {next(iter(setups))}"]
    else:
        lines = [f"Hardware: {setup} ({', '.join(groups)})" for setup, groups in setups.items()]
    if partial := [r for r in rows if "test_runs_scored" in r]:
        counts = ", ".join(
            f"{r['group']}: {r['test_runs_scored']} of {len(r['seeds'])}" for r in partial
        )
        lines.append(
            f"No test figure where only some runs were scored on the test split ({counts})."
        )
    for source in dict.fromkeys(r["from"] for r in rows if "from" in r):
        lines.append(
            f"† from {source}, an earlier comparison whose runs are not among those compared "
            "here; in the table and the changes, not in the plots."
        )
    return "\n\n".join(lines) + "\n"


def _change(row: dict[str, Any]) -> str:
    if "vs" not in row:
        return ""
    test = f"; test {row['delta_test_acc']:+.2f} pts" if "delta_test_acc" in row else ""
    return f"{row['delta_val_acc']:+.2f} pts / {row['delta_val_loss']:+.4f}{test} vs {row['vs']}"
