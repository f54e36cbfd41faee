"""Classify image files with a trained checkpoint: the top classes of each, printed or saved.

python predict.py --ckpt best.pt cat.jpg dog.png        # newest run's best.pt
python predict.py --ckpt checkpoints/<run>/best.pt photos/ --top-k 5   # a folder, recursively
python predict.py --ckpt best.pt "photos/**/*.png" --output preds.csv   # a glob; or .json

Each image gets the checkpoint's own preprocessing (its input side, normalisation, precision
and layout). An unreadable file is named on stderr and skipped. Exit code: 0 when every image
was classified, 1 when some were skipped, 2 for a usage error or when none could be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from utils.cli import interrupts_exit, run_cli

with interrupts_exit():  # Ctrl-C while torch loads: exit 130, not a traceback
    from data.image_files import find_images
    from evaluation.classifier import DEFAULT_BATCH_SIZE, load_classifier
    from evaluation.prediction_output import (
        OUTPUT_SUFFIXES,
        format_table,
        prediction_rows,
        write_predictions,
    )
    from utils.cli_args import add_checkpoint_args, add_tta_args, whole_number_at_least
    from utils.errors import DataError
    from utils.run_log import TTA_MODES


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="an image file, a folder (searched recursively, hidden entries left out) or a glob",
    )
    add_checkpoint_args(parser)
    parser.add_argument(
        "--top-k",
        type=whole_number_at_least(1),
        default=3,
        help="classes shown per image (default: 3)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="also write every image's prediction and class probabilities to this .csv or .json",
    )
    add_tta_args(parser, TTA_MODES)
    parser.add_argument(
        "--batch-size",
        type=whole_number_at_least(1),
        default=DEFAULT_BATCH_SIZE,
        help=f"images per forward pass (default: {DEFAULT_BATCH_SIZE})",
    )
    args = parser.parse_args()
    if args.output is not None and args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        parser.error(f"--output {args.output}: expected a file ending in .csv or .json")
    return args


def main() -> int:
    args = parse_args()
    files = find_images(args.paths)
    classifier = load_classifier(args.ckpt, args.device, args.tta, args.batch_size, args.runs_dir)
    print(f"checkpoint: {classifier.checkpoint_path}", file=sys.stderr)
    start = time.perf_counter()
    result = classifier.predict_files(files)
    seconds = time.perf_counter() - start
    for _, reason in result.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    if not result.files:
        raise DataError(f"no readable image among the {len(files)} files given")
    rows = prediction_rows(result.files, result.probabilities, classifier.class_names, args.top_k)
    print(format_table(rows))
    if args.output is not None:
        write_predictions(rows, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    count = len(result.files)
    print(f"{count} images in {seconds:.1f} s ({count / seconds:.0f} img/s)", file=sys.stderr)
    return 1 if result.skipped else 0


if __name__ == "__main__":
    run_cli(main)
