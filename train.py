"""Train ResNet-18 from a YAML config.

python train.py --config optimized.yaml
python train.py --config optimized.yaml --data-root ../shared/data/cifar10-jpg
python train.py --config baseline.yaml --set train.epochs=5 --set optim.lr=0.05
python train.py --resume checkpoints/<run>          # continue a stopped run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from data import resolve_data_root
from training.distributed import shutdown_distributed
from training.trainer import fit
from utils.checkpoint import load_checkpoint, steps_into_next_epoch
from utils.cli import run_cli
from utils.config import Config, apply_override, config_from_dict, load_config, resume_safe_keys
from utils.errors import UserError


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a YAML file, or a bare name in configs/ (baseline.yaml)")
    source.add_argument("--resume", help="a run directory or its last.pt, to continue that run")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.05 (repeatable)",
    )
    parser.add_argument(
        "--data-root",
        help="data location; overrides data.root "
        "(also read from the RESNET18_DATA_ROOT environment variable)",
    )
    parser.add_argument(
        "--run-name",
        help="run directory name under output_dir (default: <config name>-<date>-<time>)",
    )
    return parser.parse_args()


def overrides(args: argparse.Namespace) -> list[str]:
    """--data-root (or the environment) then --set, in that order of precedence."""
    root = resolve_data_root(args.data_root)
    return ([f"data.root={root}"] if root else []) + args.set


def resumed_config(args: argparse.Namespace) -> tuple[Config, Path, dict]:
    path = Path(args.resume)
    if path.is_dir():
        path = path / "last.pt"
    elif path.name == "best.pt":
        raise UserError(
            f"{path} holds the best epoch's weights, not the run's latest state; resume from "
            f"{path.parent} (its last.pt)"
        )
    checkpoint = load_checkpoint(path)
    raw = checkpoint["config"]
    allowed = resume_safe_keys()
    for assignment in overrides(args):
        key = assignment.partition("=")[0].strip()
        if key not in allowed:
            raise UserError(
                f"--set {key} cannot change on resume (it would change the split, the batches "
                f"or the model); keys that can: {', '.join(sorted(allowed))}"
            )
        apply_override(raw, assignment)
    return config_from_dict(raw, f"{path} (stored config)"), path.parent, checkpoint


def main() -> None:
    args = parse_args()
    if args.resume:
        cfg, run_dir, checkpoint = resumed_config(args)
        epoch, steps = checkpoint["epoch"], steps_into_next_epoch(checkpoint)
        within = f" and {steps} steps of epoch {epoch + 1}" if steps else ""
        print(f"resuming {run_dir} after epoch {epoch}{within}")
    else:
        cfg, checkpoint = load_config(args.config, overrides(args)), None
        name = args.run_name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(cfg.output_dir) / name
        if (run_dir / "last.pt").exists():
            raise UserError(f"{run_dir} already holds a run; resume it with --resume {run_dir}")
    try:
        fit(cfg, run_dir, checkpoint)
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    run_cli(main)
