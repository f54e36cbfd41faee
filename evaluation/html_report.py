"""The HTML reports: ``report.html`` of one evaluation, and the report of a comparison of runs.

Both embed the PNGs that ``evaluation.plots`` and ``evaluation.compare`` have already drawn
rather than drawing their own (see ``evaluation.html_page`` for what makes a page self-contained).
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path
from typing import Any

from evaluation.html_page import (
    figure,
    key_value_table,
    number_cell,
    section,
    table,
    text_cell,
    write_page,
)
from evaluation.run_records import read_json
from utils.errors import UserError
from utils.run_log import METRIC_FIELDS, read_history

RUN_REPORT = "report.html"
RELIABILITY_DIAGRAM = "reliability_diagram.png"

# (metrics.json key, label, format); keys the metrics lack are left out (ECE is optional)
HEADLINE_METRICS = (
    ("accuracy", "accuracy", "{:.2%}"),
    ("loss", "loss (cross-entropy)", "{:.4f}"),
    ("top5_accuracy", "top-5 accuracy", "{:.2%}"),
    ("macro_precision", "macro precision", "{:.4f}"),
    ("macro_recall", "macro recall", "{:.4f}"),
    ("macro_f1", "macro F1", "{:.4f}"),
    ("ece", "expected calibration error", "{:.4f}"),
)
PER_CLASS_METRICS = ("precision", "recall", "f1")
SUMMARY_FACTS = ("hardware", "precision", "train_seconds", "best_epoch", "epochs_run")
TTA_NOTES = {
    "flip": "each prediction averages the image's with its mirror image's",
    "flip-shift": "each prediction averages the image and its mirror with one-pixel shifts",
}


def write_run_report(
    report: dict[str, Any], config: dict[str, Any], run_dir: Path, out_dir: Path
) -> Path:
    """``out_dir/report.html`` of an evaluation: ``report`` is what ``metrics.json`` holds plus
    the plots drawn beside it, ``config`` the checkpoint's, ``run_dir`` where it trained."""
    plots = {Path(p).name: Path(p) for p in report.get("plots", [])}
    plots.setdefault(RELIABILITY_DIAGRAM, out_dir / RELIABILITY_DIAGRAM)  # if one was drawn
    name = config.get("name", run_dir.name)
    mistakes = figure(plots.get("misclassified.png"), "true and predicted class (probability)")
    title = f"{name}: {report['split']} evaluation"
    return write_page(
        out_dir / RUN_REPORT,
        title,
        [
            overview(report, title),
            metrics_section(report),
            per_class_section(report["per_class"], plots),
            section("Most confident mistakes", mistakes),
            section("Calibration", figure(plots[RELIABILITY_DIAGRAM], "reliability diagram")),
            training_section(read_history(run_dir), plots.get("training_curves.png")),
            run_section(config, run_dir / "summary.json"),
        ],
    )


def overview(report: dict[str, Any], title: str) -> str:
    steps = report.get("steps_into_next_epoch")
    facts = [
        f"{report['split']} set: {report['num_samples']} images ({report['data']})",
        f"weights after epoch {report['epoch']}"
        + (f" and {steps} steps of the next" if steps else ""),
        f"checkpoint {report['checkpoint']}",
    ]
    lines = "\n".join(f'<p class="subtitle">{escape(fact)}</p>' for fact in facts)
    return f"<header>\n<h1>{escape(title)}</h1>\n{lines}\n</header>"


def metrics_section(report: dict[str, Any]) -> str:
    rows = [
        f"<tr>{text_cell(label)}{number_cell(report[key], fmt, key)}</tr>"
        for key, label, fmt in HEADLINE_METRICS
        if key in report
    ]
    return section("Metrics", table(["metric", "value"], rows), tta_note(report.get("tta")))


def tta_note(tta: Any) -> str:
    """What test-time augmentation the numbers include: a mode's name, or a dict describing it."""
    if isinstance(tta, dict):
        return "<h3>Test-time augmentation</h3>\n" + key_value_table(tta.items())
    if not tta or tta == "none":
        return ""
    how = TTA_NOTES.get(tta, "see evaluation.inference.views")
    return f'<p class="note">With {escape(tta)} test-time augmentation: {escape(how)}.</p>'


def per_class_section(per_class: dict[str, dict[str, Any]], plots: dict[str, Path]) -> str:
    rows = [
        f'<tr data-class="{escape(name)}">{text_cell(name)}'
        + "".join(number_cell(stats[metric], "{:.4f}", metric) for metric in PER_CLASS_METRICS)
        + f'<td class="num">{stats["support"]}</td></tr>'
        for name, stats in per_class.items()
    ]
    classes = table(["class", *PER_CLASS_METRICS, "images"], rows)
    matrix = figure(plots.get("confusion_matrix.png"), "rows: true class; columns: predicted")
    recall = figure(plots.get("per_class_accuracy.png"), "accuracy (recall) of each class")
    grid = f'<div class="grid"><div class="fit">{classes}</div>{recall}</div>'
    return section("Per class", grid, matrix and f'<div class="narrow">{matrix}</div>')


def training_section(history: list[dict[str, Any]], curves: Path | None) -> str:
    """The training curves, and the per-epoch numbers behind them folded away."""
    if not history:
        return ""
    fields = [field for field in METRIC_FIELDS if field in history[0]]
    rows = [
        "<tr>" + "".join(text_cell(_short(row.get(field, ""))) for field in fields) + "</tr>"
        for row in history
    ]
    epochs = (
        f"<details><summary>per-epoch metrics ({len(history)} epochs)</summary>"
        + table(fields, rows)
        + "</details>"
    )
    return section("Training", figure(curves, "loss and accuracy by epoch"), epochs)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_section(config: dict[str, Any], summary_path: Path) -> str:
    """How the run was made: its machine (``summary.json``, once training has finished) and its
    config, a table for each of its parts."""
    summary = read_json(summary_path) if summary_path.is_file() else {}
    if not isinstance(summary, dict):
        raise UserError(f"{summary_path}: expected a JSON object of run facts")
    facts = [(key, summary[key]) for key in SUMMARY_FACTS if key in summary]
    facts += [(key, value) for key, value in config.items() if not isinstance(value, dict)]
    parts = [("run", facts)] + [
        (key, list(value.items())) for key, value in config.items() if isinstance(value, dict)
    ]
    tables = [
        f"<div><h3>{escape(name)}</h3>{key_value_table(items)}</div>"
        for name, items in parts
        if items
    ]
    return section("Run", '<div class="grid">' + "\n".join(tables) + "</div>")


def run_reports(run_dir: Path) -> list[Path]:
    """The evaluation reports a run has (``eval-val/report.html``, ``eval-test/report.html``,
    ``eval-test-flip-shift/report.html``, ...): validation first, the others in name order."""
    return sorted(
        run_dir.glob(f"eval-*/{RUN_REPORT}"), key=lambda p: (p.parent.name != "eval-val", p)
    )


def write_comparison_report(
    path: Path,
    cells: list[list[str]],
    notes: str,
    plots: list[tuple[Path, str]],
    run_dirs: list[list[Path]],
) -> Path:
    """``path``: the results table (``cells[0]`` its header; the cells as the markdown table has
    them) with links to the reports of each row's ``run_dirs``, its ``notes`` and the plots."""
    header, *rows = cells
    rendered = [
        f'<tr data-row="{i}">' + "".join(map(text_cell, row)) + _links(dirs, path.parent) + "</tr>"
        for i, (row, dirs) in enumerate(zip(rows, run_dirs, strict=True))
    ]
    paragraphs = [f'<p class="note">{escape(p)}</p>' for p in notes.split("\n\n") if p.strip()]
    name = path.stem.removesuffix("report").removesuffix("_")  # the prefix, if there was one
    title = f"Comparison: {name}" if name else "Comparison"
    figures = "".join(figure(png, caption) for png, caption in plots)
    return write_page(
        path,
        title,
        [
            f"<header><h1>{escape(title)}</h1></header>",
            section("Results", table([*header, "reports"], rendered), *paragraphs),
            section("Plots", figures and f'<div class="grid">{figures}</div>'),
        ],
    )


def _links(run_dirs: list[Path], base: Path) -> str:
    """A cell of relative links to the runs' reports, named ``<run> <split>``."""
    links = [
        f'<a href="{escape(Path(os.path.relpath(report, base)).as_posix())}">'
        f"{escape(run_dir.name)} {escape(report.parent.name.removeprefix('eval-'))}</a>"
        for run_dir in run_dirs
        for report in run_reports(run_dir)
    ]
    return "<td>" + (", ".join(links) or "none") + "</td>"
