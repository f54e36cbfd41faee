"""Checkpoint files: atomic writes, loads that never run code or accept a misshapen file, and
finding them by name.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` and nothing in it is executed on load.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from utils.errors import CheckpointError
from utils.safe_write import atomic_write, copy_atomic

# 2: run_state.world_size and data_fingerprint; 3: one fast_path entry (precision, layout)
# and input_side. Older checkpoints are brought up to 3 as they load (``upgrade``).
FORMAT_VERSION = 3
# The keys every checkpoint has, with the type each must be.
REQUIRED_KEYS = {
    "format_version": (int, "an integer"),
    "model": (dict, "a mapping of tensors"),
    "model_args": (dict, "a mapping"),
    "class_names": (list, "a list of names"),
    "normalization": (dict, "a mapping"),
    "config": (dict, "a mapping"),
}
# Where ``load_checkpoint`` read a checkpoint from, kept in the loaded dict (not in the file) so
# that an error about any part of it can name the file.
SOURCE_KEY = "loaded_from"


def save_checkpoint(payload: dict[str, Any], path: Path) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the old file or the new one, and
    a failed write (a full disk) keeps the old one and is a ``WriteError`` naming the cause.
    Where a loaded checkpoint came from is not saved with it."""
    stored = {k: v for k, v in payload.items() if k != SOURCE_KEY}
    atomic_write(path, lambda file: torch.save(stored, file))


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
    check_required_types(payload, path)
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {payload['format_version']}; this code reads up to "
            f"{FORMAT_VERSION}: update the repo"
        )
    payload[SOURCE_KEY] = str(path)
    return upgrade(payload)


def check_required_types(payload: dict[str, Any], path: Path) -> None:
    """Each required key holds the type it must (an edited file may hold anything)."""
    for key, (kind, expected) in REQUIRED_KEYS.items():
        value = payload[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: {key} should be {expected}, got {value!r:.60}")
    if not all(isinstance(name, str) for name in payload["class_names"]):
        raise CheckpointError(f"{path}: class_names should be a list of names")


@contextmanager
def reading(checkpoint: dict[str, Any], part: str) -> Iterator[None]:
    """Errors inside, from a part of ``checkpoint`` that does not fit the live objects (an
    edited or foreign file: a changed shape, a removed key), become one CheckpointError naming
    the file, the part and the first mismatch."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        source = checkpoint.get(SOURCE_KEY, "the checkpoint")
        raise CheckpointError(
            f"{source}: its {part} does not fit this model: {first_mismatch(err)}"
        ) from None


def load_state(
    target: Any, checkpoint: dict[str, Any], key: str, state: dict[str, Any] | None = None
) -> None:
    """``target.load_state_dict(checkpoint[key])`` (or of ``state``, drawn from it), with a
    mismatch as one CheckpointError (``reading``). An optimiser's per-parameter tensors must
    also match their parameters' shapes: torch checks that only at the next step."""
    with reading(checkpoint, key):
        if isinstance(target, torch.optim.Optimizer):
            with implementation_kept(target):
                target.load_state_dict(checkpoint[key] if state is None else state)
            check_optimizer_shapes(target)
        else:
            target.load_state_dict(checkpoint[key] if state is None else state)


IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")


@contextmanager
def implementation_kept(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Keep how ``optimizer`` was built to run (fused on CUDA, foreach on CPU) across
    ``load_state_dict``, which would bring back the saving run's flags: a run trained on CPU
    and resumed on CUDA would lose its fused step, and fp16's scaler would meet foreach."""
    built = [
        {flag: group[flag] for flag in IMPLEMENTATION_FLAGS if flag in group}
        for group in optimizer.param_groups
    ]
    yield
    for group, flags in zip(optimizer.param_groups, built, strict=True):
        group.update(flags)


def check_optimizer_shapes(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.ndim and value.shape != param.shape:
                    raise ValueError(
                        f"{name} has shape {list(value.shape)}, its parameter {list(param.shape)}"
                    )


def first_mismatch(err: BaseException) -> str:
    """The first problem ``load_state_dict`` lists (it lists them all, a line each, and every
    missing key on one line), or the error itself."""
    if isinstance(err, KeyError):
        return f"missing key {err}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in") else lines[0]
    head, more, _ = detail.partition('", "')
    return f'{head}", ...' if more else detail


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


def restore_best(last: Path, checkpoint: dict[str, Any]) -> str | None:
    """Make ``best.pt`` beside ``last`` hold the best epoch that ``last``'s record names, where
    it can; returns what was done, or why it could not be, to print (None: nothing to do).

    A run writes best.pt before last.pt, so last.pt never names a best epoch whose file was not
    written; but a file can be deleted, and older runs wrote last.pt first, so a full disk
    could leave it naming a best.pt that was never written. When that epoch is last.pt's own
    (saved at its end), best.pt is a copy of last.pt."""
    run_state = checkpoint.get("run_state", {})
    best_epoch = run_state.get("best_epoch", 0)
    best = last.with_name("best.pt")
    if not best_epoch or epoch_on_disk(best) == best_epoch:
        return None
    if checkpoint["epoch"] == best_epoch and not run_state.get("partial_epoch"):
        copy_atomic(last, best)
        return f"rewrote {best} from {last}: its epoch {best_epoch} is the run's best"
    return (
        f"warning: {best} does not hold the run's best epoch {best_epoch} and cannot be rebuilt; "
        f"it is written again when validation loss improves on {run_state.get('best_val_loss')}"
    )


def epoch_on_disk(path: Path) -> int | None:
    """The epoch of the checkpoint at ``path``; None when there is none or it is unreadable."""
    if not path.is_file():
        return None
    try:
        return load_checkpoint(path)["epoch"]
    except (CheckpointError, KeyError):
        return None
