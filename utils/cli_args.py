"""Command-line arguments shared by evaluate.py, predict.py and export.py."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path


def whole_number_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text}") from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {low}, got {text}"
            )
        return value

    return parse


def add_checkpoint_args(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """``--ckpt`` and ``--runs-dir`` (where a bare name is looked up), and ``--device``."""
    parser.add_argument(
        "--ckpt",
        required=True,
        help="a checkpoint path, a run directory, or a bare name (best.pt, "
        "last.pt) meaning that file in the newest run",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("checkpoints"),
        help="where bare checkpoint names are looked up (default: checkpoints)",
    )
    if device:
        parser.add_argument(
            "--device", default="auto", help="auto (cuda, mps, cpu) or a torch device"
        )


def add_tta_args(parser: argparse.ArgumentParser, modes: Sequence[str]) -> None:
    """``--tta MODE`` and its older spelling ``--flip-tta``."""
    parser.add_argument(
        "--tta",
        choices=modes,
        default="none",
        help="test-time augmentation: flip averages each prediction with the mirror image's; "
        "flip-shift adds one-pixel shifts (default: none)",
    )
    parser.add_argument(
        "--flip-tta", dest="tta", action="store_const", const="flip", help="the same as --tta flip"
    )
