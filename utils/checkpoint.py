"""Checkpoint files: atomic writes, loads that never run code, and finding them by name.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` and nothing in it is executed on load.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from utils.errors import CheckpointError

# 2: run_state.world_size and data_fingerprint; 3: one fast_path entry (precision, layout)
# and input_side. Older checkpoints are brought up to 3 as they load (``upgrade``).
FORMAT_VERSION = 3
REQUIRED_KEYS = (
    "format_version",
    "model",
    "model_args",
    "class_names",
    "normalization",
    "config",
)


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load one of this repo's checkpoints, refusing anything that would need to run code."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with warnings.catch_warnings():
            # Damaged bytes can read as an odd pickle protocol; the error below says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).splitlines()[0] if str(err) else "unsupported content"
        raise CheckpointError(
            f"{path} was refused: it is not a plain-data checkpoint ({first})"
        ) from None
    except Exception as err:  # damaged bytes fail in many ways inside the unpickler
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated or corrupt?): {reason}"
        ) from None
    if not isinstance(payload, dict) or any(k not in payload for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is a torch file but not a checkpoint of this repo")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {payload['format_version']}; this code reads up to "
            f"{FORMAT_VERSION}: update the repo"
        )
    return upgrade(payload)


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring a checkpoint of format 1 or 2 to format 3, in place: those kept the precision and
    the NCHW stages in ``run_state`` (format 1: neither, so the configured precision and
    channels_last throughout) and called the input side ``input_size``."""
    if checkpoint["format_version"] >= 3:
        return checkpoint
    run_state = checkpoint.setdefault("run_state", {})
    train = checkpoint["config"].get("train", {})
    checkpoint["fast_path"] = {
        "precision": run_state.pop("precision", None) or train.get("precision", "auto"),
        "channels_last": train.get("channels_last", True),
        "nchw_stages": run_state.pop("nchw_stages", None) or [],
    }
    if "input_size" in checkpoint:
        checkpoint["input_side"] = checkpoint.pop("input_size")
    checkpoint["format_version"] = 3
    return checkpoint


def scored_weights(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The weights validation scored and evaluation scores: the moving average where the run
    kept one (``train.ema_decay``), else the raw weights."""
    averaged = checkpoint.get("ema")
    if not averaged:
        return checkpoint["model"]
    return {k.removeprefix("module."): v for k, v in averaged.items() if k != "n_averaged"}


def steps_into_next_epoch(checkpoint: dict[str, Any]) -> int:
    """Steps of the next epoch a checkpoint's weights hold: a last.pt saved mid-epoch has some."""
    partial = checkpoint.get("run_state", {}).get("partial_epoch")
    return partial["steps"] if partial else 0


def resolve_checkpoint_path(name: str, output_dir: Path) -> Path:
    """A path as given; a run directory means its ``best.pt``; a bare file name
    (``best.pt``, ``last.pt``) means that file in the newest run under ``output_dir``."""
    path = Path(name)
    if path.is_dir():
        path = path / "best.pt"
    if path.exists() or path.parent != Path("."):
        return path
    runs = sorted(output_dir.glob(f"*/{name}"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise CheckpointError(f"checkpoint {name!r} not found, and no run in {output_dir}/ has one")
    return runs[-1]
