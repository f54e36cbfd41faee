"""Predictions of image files as rows: a table to print, or a CSV or JSON file to write.

File and class names come from outside (a folder's names, a checkpoint's class list): the
table escapes their control characters, and the CSV neutralises cells a spreadsheet would run
as formulas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from utils.safe_write import write_text_atomic

OUTPUT_SUFFIXES = (".csv", ".json")
DECIMALS = 6  # of the probabilities written: float32 holds about 7 significant digits


def prediction_rows(
    files: Sequence[Path], probabilities: Tensor, class_names: list[str], k: int
) -> list[dict[str, Any]]:
    """One row per image: its path, the predicted class and its probability, the ``k`` likeliest
    classes (likeliest first; ``k`` at most the number of classes) and every class's
    probability. probabilities: (N, C), rows summing to 1."""
    top_indices = probabilities.topk(min(k, len(class_names)), dim=1).indices  # (N, k)
    rounded = probabilities.double().round(decimals=DECIMALS).tolist()
    rows = []
    for path, top, probs in zip(files, top_indices.tolist(), rounded, strict=True):
        top_k = [{"class": class_names[i], "probability": probs[i]} for i in top]
        rows.append(
            {
                "path": str(path),
                "predicted": top_k[0]["class"],
                "probability": top_k[0]["probability"],
                "top_k": top_k,
                "probabilities": dict(zip(class_names, probs, strict=True)),
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """An aligned table: each image's path, then its top classes with their probabilities.
    Paths and class names are shown with their control characters escaped (``printable``), so
    a newline in a name cannot break a line of the table."""
    paths = [printable(row["path"]) for row in rows]
    path_width = max(len("image"), *(len(path) for path in paths))
    name_width = max(len(printable(entry["class"])) for row in rows for entry in row["top_k"])
    cell_width = name_width + 7  # the name, a space and "0.1234"
    k = len(rows[0]["top_k"])
    header = [f"{'image':<{path_width}}", *(f"{f'top-{i + 1}':<{cell_width}}" for i in range(k))]
    lines = ["  ".join(header).rstrip()]
    for path, row in zip(paths, rows, strict=True):
        cells = [
            f"{printable(e['class']):<{name_width}} {e['probability']:.4f}" for e in row["top_k"]
        ]
        lines.append("  ".join([f"{path:<{path_width}}", *cells]))
    return "\n".join(lines)


def printable(text: str) -> str:
    """``text`` with each character that does not print (a newline, a tab, an escape) written
    as its Python escape: ``a\\nb`` for a newline between a and b."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> object:
    """A text cell that starts like a formula, with a ``'`` in front so a spreadsheet shows it
    as text (OWASP's advice); numbers and other text unchanged. The csv module adds the quotes
    a cell with a comma or a quote needs."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_text(rows: list[dict[str, Any]]) -> str:
    """One line per row: path, prediction and its probability, the top-k as columns
    top<i>_class and top<i>_probability, then a p(<class>) column per class; every text cell
    through ``spreadsheet_safe``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    k = len(rows[0]["top_k"]) if rows else 0
    tops = [f"top{i + 1}_{field}" for i in range(k) for field in ("class", "probability")]
    names = list(rows[0]["probabilities"]) if rows else []
    header = ["path", "predicted", "probability", *tops, *(f"p({n})" for n in names)]
    writer.writerow([spreadsheet_safe(cell) for cell in header])
    for row in rows:
        top = [value for entry in row["top_k"] for value in (entry["class"], entry["probability"])]
        cells = [row["path"], row["predicted"], row["probability"], *top]
        cells += row["probabilities"].values()
        writer.writerow([spreadsheet_safe(cell) for cell in cells])
    return out.getvalue()


def write_predictions(rows: list[dict[str, Any]], path: Path) -> None:
    """``path`` ending in .json: the rows as a list of objects; .csv: ``csv_text``. Written
    atomically: a failed write (a full disk) keeps the file it would replace and is one line
    naming ``path``."""
    if path.suffix.lower() == ".json":
        write_text_atomic(path, json.dumps(rows, indent=2) + "\n")
    else:
        write_text_atomic(path, csv_text(rows))
