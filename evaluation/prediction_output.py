"""Predictions of image files as rows: a table to print, or a CSV or JSON file to write."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

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
    """An aligned table: each image's path, then its top classes with their probabilities."""
    path_width = max(len("image"), *(len(row["path"]) for row in rows))
    name_width = max(len(entry["class"]) for row in rows for entry in row["top_k"])
    cell_width = name_width + 7  # the name, a space and "0.1234"
    k = len(rows[0]["top_k"])
    header = [f"{'image':<{path_width}}", *(f"{f'top-{i + 1}':<{cell_width}}" for i in range(k))]
    lines = ["  ".join(header).rstrip()]
    for row in rows:
        cells = [f"{e['class']:<{name_width}} {e['probability']:.4f}" for e in row["top_k"]]
        lines.append("  ".join([f"{row['path']:<{path_width}}", *cells]))
    return "\n".join(lines)


def write_predictions(rows: list[dict[str, Any]], path: Path) -> None:
    """``path`` ending in .json: the rows as a list of objects; .csv: one line per row, the
    top-k as columns top<i>_class and top<i>_probability, then a p(<class>) column per class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(rows, indent=2) + "\n")
        return
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        k = len(rows[0]["top_k"]) if rows else 0
        tops = [f"top{i + 1}_{field}" for i in range(k) for field in ("class", "probability")]
        names = list(rows[0]["probabilities"]) if rows else []
        writer.writerow(["path", "predicted", "probability", *tops, *(f"p({n})" for n in names)])
        for row in rows:
            top = [
                value for entry in row["top_k"] for value in (entry["class"], entry["probability"])
            ]
            probs = row["probabilities"].values()
            writer.writerow([row["path"], row["predicted"], row["probability"], *top, *probs])
