"""Compare finished runs: results table (markdown + JSON) and overlay plots of val loss/acc.

python compare.py checkpoints/baseline-s* checkpoints/optimized-s*   # into docs/results
python compare.py docs/results/runs/baseline-es --reference docs/results/ablations.json \\
    --prefix ablations
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evaluation.compare import compare_runs
from utils.cli import run_cli


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--output-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--prefix", default="results", help="file name prefix (default: results)")
    parser.add_argument(
        "--reference",
        type=Path,
        help="an earlier results JSON: its groups without runs here join the table",
    )
    args = parser.parse_args()
    result = compare_runs(args.runs, args.output_dir, args.prefix, args.reference)
    print(result["table"])
    plots = ", ".join(png.name for png in result["plots"])
    print(f"wrote {args.output_dir}/{args.prefix}.md, .json, _report.html and {plots}")


if __name__ == "__main__":
    run_cli(main)
