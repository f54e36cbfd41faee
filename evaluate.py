"""Evaluate a trained checkpoint: metrics (printed and JSON) and plots.

python evaluate.py --ckpt best.pt                       # newest run's best.pt, val split
python evaluate.py --ckpt checkpoints/<run>/best.pt --split test
python evaluate.py --ckpt best.pt --image-folder path/to/images   # any <class>/* tree
python evaluate.py --ckpt best.pt --tta flip            # also classify mirror images
python evaluate.py --ckpt best.pt --tta flip-shift      # mirrors and one-pixel shifts
python evaluate.py --ckpt best.pt --calibrate           # fit a temperature on val
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import interrupts_exit, run_cli

with interrupts_exit():  # Ctrl-C while torch loads: exit 130, not a traceback
    from data import resolve_data_root
    from evaluation.report import evaluate_checkpoint, format_report
    from utils.checkpoint import load_checkpoint, resolve_checkpoint_path
    from utils.cli_args import add_checkpoint_args, add_tta_args
    from utils.run_log import EVAL_SPLITS, TTA_MODES


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_checkpoint_args(parser)
    parser.add_argument(
        "--split",
        choices=EVAL_SPLITS,
        default="val",
        help="which split of the training data set (default: val)",
    )
    parser.add_argument(
        "--data-root",
        help="data location, overriding the checkpoint's config "
        "(also read from RESNET18_DATA_ROOT)",
    )
    parser.add_argument(
        "--image-folder",
        type=Path,
        help="evaluate on this <class>/<image> tree instead of a split",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where to write metrics.json and plots "
        "(default: <run>/eval-<split>, or <run>/eval-<split>-<tta> with --tta flip or flip-shift)",
    )
    add_tta_args(parser, TTA_MODES)
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="fit a temperature on the validation split and write <ckpt>-calibrated.pt, "
        "which evaluate.py, predict.py and export.py apply",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    path = resolve_checkpoint_path(args.ckpt, args.runs_dir)
    print(f"checkpoint: {path}")
    checkpoint = load_checkpoint(path)
    report = evaluate_checkpoint(
        checkpoint,
        path,
        args.split,
        resolve_data_root(args.data_root),
        args.image_folder,
        args.output_dir,
        args.device,
        args.tta,
        args.calibrate,
    )
    print(format_report(report))


if __name__ == "__main__":
    run_cli(main)
