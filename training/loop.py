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
    """Running sums over one epoch; plain numbers so a partial epoch can be checkpointed."""

    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    steps: int = 0  # batches consumed, including skipped ones
    skipped: int = 0
    interrupted: bool = False

    @property
    def loss(self) -> float:
        return self.loss_sum / self.seen if self.seen else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen if self.seen else math.nan


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
    # given this rank's answer, True when the loss is finite on every rank, so that all ranks
    # skip or stop together
    all_finite: Callable[[bool], bool] = lambda finite: finite


def _train_step(
    ctx: StepContext, inputs: Tensor, labels: Tensor, step: int
) -> tuple[float, int] | None:
    """One optimiser step; returns (loss, correct predictions), or None when a non-finite loss
    was skipped. Both are read from the device at once, before the backward pass is queued:
    one wait per step, and a GPU runs the backward pass while the next batch is prepared."""
    for group in ctx.optimizer.param_groups:
        group["lr"] = ctx.schedule.lr(step)
    with ctx.autocast():
        logits = ctx.model(inputs)  # (N, num_classes)
        loss = ctx.criterion(logits, labels)
    correct = (logits.detach().argmax(1) == labels).sum()
    loss_value, correct_count = torch.stack([loss.detach().float(), correct.float()]).tolist()
    if not ctx.all_finite(math.isfinite(loss_value)):
        if ctx.skip_nonfinite:
            return None
        raise NonFiniteLossError(
            f"loss is {loss_value} at global step {step}; lower optim.lr, or set "
            "train.nonfinite_loss=skip to skip such batches"
        )
    ctx.optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(ctx.optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        ctx.optimizer.step()
    return loss_value, int(correct_count)


def train_one_epoch(
    ctx: StepContext,
    batches: Batches,
    transform: BatchTransform,
    gen: torch.Generator,
    first_step: int,
    total: int,
    desc: str = "train",
    stats: EpochStats | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = True,
) -> EpochStats:
    """Train on ``batches`` until they run out or ``should_stop()`` turns true after a step.

    ``stats`` carries the sums of a partly done epoch when resuming it; the returned stats are
    cumulative and ``interrupted`` says whether the epoch was cut short.
    """
    ctx.model.train()
    stats = stats or EpochStats()
    bar = tqdm(
        batches, total=total, initial=stats.steps, desc=desc, leave=False,
        disable=None if progress else True,
    )  # fmt: skip
    for images, labels in bar:
        result = _train_step(ctx, transform(images, gen), labels, first_step + stats.steps)
        stats.steps += 1
        if result is None:
            stats.skipped += 1
        else:
            loss, correct = result
            stats.loss_sum += loss * len(labels)
            stats.correct += correct
            stats.seen += len(labels)
            bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.accuracy:.4f}")
        if should_stop():
            stats.interrupted = stats.steps < total
            break
    bar.close()
    return stats


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
    desc: str = "eval",
    progress: bool = True,
    flip_tta: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (float32 logits, labels) per batch, in eval mode, with no gradient tracking.

    ``flip_tta``: also classify each image mirrored left-right and average the two predicted
    distributions; the logits yielded are then the log of that average.
    """
    model.eval()
    disable = None if progress else True
    for images, labels in tqdm(batches, total=total, desc=desc, leave=False, disable=disable):
        with autocast():
            inputs = transform(images)
            logits = model(inputs).float()
            if flip_tta:
                mirrored = model(inputs.flip(3)).float()
        if flip_tta:
            log_probs = torch.stack([logits.log_softmax(1), mirrored.log_softmax(1)])
            logits = log_probs.logsumexp(0) - math.log(2)
        yield logits, labels


def evaluate_loss_accuracy(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
    progress: bool = True,
) -> EpochStats:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy over all samples."""
    stats = EpochStats()
    for logits, labels in predict(model, batches, transform, autocast, total, "val", progress):
        stats.loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        stats.correct += int((logits.argmax(1) == labels).sum())
        stats.seen += len(labels)
    return stats
