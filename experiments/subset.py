"""Make an image folder of some classes of another, with at most N images per class, as
symbolic links (no copies), for experiments on a part of a data set.

    python -m experiments.subset ../shared/data/cifar10-jpg/train /tmp/animals/train \\
        --classes bird cat deer dog frog horse
    python -m experiments.subset ../shared/data/cifar10-jpg/train /tmp/vehicles/train \\
        --classes airplane automobile ship truck --per-class 100
    python -m experiments.subset ../shared/data/cifar10-jpg/train /tmp/vehicles/val \\
        --classes airplane automobile ship truck --per-class 200 --skip 100

Each class takes its files in sorted order, after skipping ``--skip`` of them, so two calls
with different ``--skip`` give disjoint sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data.datasets import IMAGE_EXTENSIONS
from utils.cli import run_cli
from utils.errors import UserError


def make_subset(
    source: Path, target: Path, classes: list[str], per_class: int | None, skip: int = 0
) -> dict[str, int]:
    """Link the chosen files of ``source/<class>/`` into ``target/<class>/``; returns the
    number linked per class."""
    counts = {}
    for name in classes:
        folder = source / name
        if not folder.is_dir():
            raise UserError(f"{folder} not found: {source} has no class {name!r}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        chosen = files[skip:] if per_class is None else files[skip : skip + per_class]
        (target / name).mkdir(parents=True, exist_ok=True)
        for file in chosen:
            link = target / name / file.name
            if not link.exists():
                link.symlink_to(file.resolve())
        counts[name] = len(chosen)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a folder of <class>/<image> files")
    parser.add_argument("target", type=Path)
    parser.add_argument("--classes", nargs="+", required=True)
    parser.add_argument("--per-class", type=int, help="at most this many per class (all)")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N per class")
    args = parser.parse_args()
    counts = make_subset(args.source, args.target, args.classes, args.per_class, args.skip)
    print(f"{args.target}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    run_cli(main)
