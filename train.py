"""Train ResNet-18 from a YAML config.

python train.py --config optimized.yaml
python train.py --config optimized.yaml --data-root ../shared/data/cifar10-jpg
python train.py --config baseline.yaml --set train.epochs=5 --set optim.lr=0.05
python train.py --resume checkpoints/<run>          # continue a stopped run
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from utils.cli import interrupts_exit, run_cli

with interrupts_exit():  # Ctrl-C while torch loads: exit 130, not a traceback
    from data import resolve_data_root
    from training.distributed import shutdown_distributed
    from training.trainer import fit
    from utils.checkpoint import load_checkpoint, restore_best, steps_into_next_epoch
    from utils.config import (
        Config,
        apply_override,
        config_from_dict,
        edited_config_warning,
        load_config,
        resume_safe_keys,
    )
    from utils.errors import CheckpointError, UserError
    from utils.run_lock import claim_run_dir
    from utils.run_names import run_directory


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


def resume_path(name: str) -> Path:
    """The last.pt a ``--resume`` names: a run directory's, or the file itself."""
    path = Path(name)
    if path.is_dir():
        path = path / "last.pt"
    elif path.name == "best.pt":
        raise UserError(
            f"{path} holds the best epoch's weights, not the run's latest state; resume from "
            f"{path.parent} (its last.pt)"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    return path


def resumed_config(args: argparse.Namespace, path: Path) -> tuple[Config, dict]:
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
    return config_from_dict(raw, f"{path} (stored config)"), checkpoint


def resume(args: argparse.Namespace, path: Path) -> tuple[Config, dict]:
    """The stored config and checkpoint of the run to resume, with its best.pt as its record
    says (``restore_best``)."""
    cfg, checkpoint = resumed_config(args, path)
    if note := edited_config_warning(path.parent, checkpoint["config"]):
        print(note, file=sys.stderr)
    epoch, steps = checkpoint["epoch"], steps_into_next_epoch(checkpoint)
    within = f" and {steps} steps of epoch {epoch + 1}" if steps else ""
    print(f"resuming {path.parent} after epoch {epoch}{within}")
    if note := restore_best(path, checkpoint):
        print(note, file=sys.stderr if note.startswith("warning") else sys.stdout)
    return cfg, checkpoint


def new_run_dir(args: argparse.Namespace, cfg: Config) -> Path:
    """``<output_dir>/<run name>``: the name one folder name, its folder inside output_dir."""
    if args.run_name is not None:
        return run_directory(Path(cfg.output_dir), args.run_name, "--run-name")
    name = f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run_directory(Path(cfg.output_dir), name, f"{args.config}: name")


def train(cfg: Config, run_dir: Path, checkpoint: dict | None) -> None:
    try:
        fit(cfg, run_dir, checkpoint)
    except BaseException:
        shutdown_distributed(all_ranks_finished=False)
        raise
    shutdown_distributed(all_ranks_finished=True)


def main() -> None:
    args = parse_args()
    # The run directory is claimed before anything is read from it or written to it, and held
    # until training ends: one training per directory (utils/run_lock.py).
    if args.resume:
        path = resume_path(args.resume)
        with claim_run_dir(path.parent):
            cfg, checkpoint = resume(args, path)
            train(cfg, path.parent, checkpoint)
        return
    cfg = load_config(args.config, overrides(args))
    run_dir = new_run_dir(args, cfg)
    with claim_run_dir(run_dir):
        if (run_dir / "last.pt").exists():
            again = shlex.join(["--resume", str(run_dir)])
            raise UserError(f"{run_dir} already holds a run; resume it with {again}")
        train(cfg, run_dir, None)


if __name__ == "__main__":
    run_cli(main)
