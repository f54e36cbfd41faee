"""What a checkpoint holds about a run, and putting it back into live objects.

A checkpoint is plain data (tensors, numbers, strings, lists, dicts): it loads with
``torch.load(weights_only=True)`` and needs nothing but itself to rebuild the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from data import DataBundle
from models import model_args
from training.early_stopping import EarlyStopping
from training.optimizer import WeightAverage
from utils.checkpoint import FORMAT_VERSION, load_state, reading
from utils.config import Config, config_to_dict
from utils.device import FastPath


@dataclass
class RunState:
    """Progress of a run: everything besides module/optimiser state needed to resume it."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_val_acc: float = 0.0
    stopped_early: bool = False
    train_seconds: float = 0.0
    train_pflop: float = 0.0  # training compute spent (training/compute.py)
    partial_epoch: dict[str, Any] | None = None  # sums and RNG of an epoch cut short
    world_size: int | None = None  # processes that trained; a resume must use as many
    budget: dict[str, Any] | None = None  # the time-budget plan (training/budget.py)


def make_checkpoint(
    cfg: Config,
    data: DataBundle,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stopper: EarlyStopping,
    state: RunState,
    fast_path: FastPath,
    scaler: torch.amp.GradScaler | None = None,
    ema: WeightAverage | None = None,
) -> dict[str, Any]:
    """Everything needed to evaluate the model or resume the run, as plain data and tensors."""
    rng = {"torch": torch.get_rng_state()}
    device = next(model.parameters()).device
    if device.type == "cuda":  # the training GPU's generator only: a resume may see fewer GPUs
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "format_version": FORMAT_VERSION,
        "model": model.state_dict(),
        "model_args": model_args(cfg.model, len(data.class_names)),
        "class_names": data.class_names,
        "normalization": {"mean": data.mean, "std": data.std},
        "input_side": data.input_side,  # evaluation resizes other images to it
        "fast_path": fast_path.to_dict(),
        "val_indices": data.val_indices,
        "data_fingerprint": data.fingerprint,
        "config": config_to_dict(cfg),
        "epoch": state.epoch,
        "step": state.step,
        "metrics": state.history[-1] if state.history else {},
        "run_state": {k: v for k, v in vars(state).items() if k not in ("epoch", "step")},
        "optimizer": optimizer.state_dict(),
        "grad_scaler": scaler.state_dict() if scaler is not None else None,
        "early_stopping": stopper.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,  # weights evaluation scores
        "rng": rng,
    }


def restore(
    checkpoint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    stopper: EarlyStopping,
    scaler: torch.amp.GradScaler | None = None,
    ema: WeightAverage | None = None,
) -> RunState:
    """Load a checkpoint's states into the live objects and return the run's progress; a part
    that does not fit them (an edited file) is one CheckpointError naming the file and part."""
    load_state(model, checkpoint, "model")
    if ema is not None:
        load_state(ema, checkpoint, "ema")
    load_state(optimizer, checkpoint, "optimizer")
    if scaler is not None and checkpoint.get("grad_scaler"):  # fp16: keep the loss scale
        load_state(scaler, checkpoint, "grad_scaler")
    load_state(stopper, checkpoint, "early_stopping")
    with reading(checkpoint, "rng"):
        torch.set_rng_state(checkpoint["rng"]["torch"])
        restore_cuda_rng(checkpoint["rng"].get("cuda"), next(model.parameters()).device)
    with reading(checkpoint, "run_state"):
        return RunState(
            epoch=checkpoint["epoch"], step=checkpoint["step"], **checkpoint["run_state"]
        )


def restore_cuda_rng(saved: Tensor | list[Tensor] | None, device: torch.device) -> None:
    """Set the training GPU's generator; older checkpoints hold one state per visible GPU."""
    if saved is None or device.type != "cuda":
        return
    if isinstance(saved, list):
        index = device.index or 0
        if index >= len(saved):
            return
        saved = saved[index]
    torch.cuda.set_rng_state(saved, device)
