"""One training epoch and one evaluation pass. No config files, no argument parsing."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm import tqdm

from data.augment import BatchTransform
from training.schedule import LrSchedule
from utils.errors import UserError

Batches = Iterable[tuple[Tensor, Tensor]]


class NonFiniteLossError(UserError):
    """The training loss became NaN or Inf."""


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    steps: int = 0
    skipped: int = 0


@dataclass
class StepContext:
    """What a training step needs besides the batch."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    schedule: LrSchedule
    autocast: Callable[[], AbstractContextManager]
    scaler: torch.amp.GradScaler | None = None
    skip_nonfinite: bool = False


def _train_step(
    ctx: StepContext, inputs: Tensor, labels: Tensor, step: int
) -> tuple[Tensor, Tensor] | None:
    """One optimiser step; returns (loss, logits), or None when a non-finite loss was skipped."""
    for group in ctx.optimizer.param_groups:
        group["lr"] = ctx.schedule.lr(step)
    with ctx.autocast():
        logits = ctx.model(inputs)  # (N, num_classes)
        loss = ctx.criterion(logits, labels)
    if not torch.isfinite(loss):
        if ctx.skip_nonfinite:
            ctx.optimizer.zero_grad(set_to_none=True)
            return None
        raise NonFiniteLossError(f"loss is {loss.item()} at global step {step}")
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        ctx.optimizer.step()
    return loss.detach(), logits.detach()


def train_one_epoch(
    ctx: StepContext,
    batches: Batches,
    transform: BatchTransform,
    gen: torch.Generator,
    first_step: int,
    total: int,
    desc: str = "train",
) -> EpochStats:
    """Train on every batch; the loss shown and returned is the mean over samples seen."""
    ctx.model.train()
    loss_sum = correct = seen = skipped = steps = 0
    bar = tqdm(batches, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for images, labels in bar:
        inputs = transform(images, gen)
        result = _train_step(ctx, inputs, labels, first_step + steps)
        steps += 1
        if result is None:
            skipped += 1
            continue
        loss, logits = result
        loss_sum += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
    if seen == 0:
        return EpochStats(math.nan, math.nan, steps, skipped)
    return EpochStats(loss_sum / seen, correct / seen, steps, skipped)


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
    desc: str = "eval",
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (float32 logits, labels) per batch, in eval mode, with no gradient tracking."""
    model.eval()
    for images, labels in tqdm(batches, total=total, desc=desc, leave=False, disable=None):
        with autocast():
            logits = model(transform(images))
        yield logits.float(), labels


def evaluate_loss_accuracy(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
) -> EpochStats:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy over all samples."""
    loss_sum = 0.0
    correct = seen = 0
    for logits, labels in predict(model, batches, transform, autocast, total, "val"):
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return EpochStats(loss_sum / seen, correct / seen)
