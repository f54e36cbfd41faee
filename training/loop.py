"""One training epoch, step by step, and validation. No config files, no argument parsing.

The step is ``train_step``: forward, loss, backward, optimiser step. Anything that changes
what a step does (a loss on mixed batches, an average of the weights) goes there or in
``train_one_epoch`` around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from data.augment import BatchTransform
from data.mix import BatchMixer
from evaluation.inference import predict
from training.ema import WeightAverage
from training.schedule import LrSchedule, SideSchedule
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
    gflop: float = 0.0  # training compute of the steps taken (training/compute.py)
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

    model: nn.Module  # DDP-wrapped and/or compiled when configured
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    schedule: LrSchedule
    autocast: Callable[[], AbstractContextManager]
    scaler: torch.amp.GradScaler | None = None
    skip_nonfinite: bool = False
    mixer: BatchMixer | None = None  # MixUp / CutMix
    ema: WeightAverage | None = None  # updated after every optimiser step
    sides: SideSchedule | None = None  # progressive resizing; None: the transform's side
    # forward + backward GFLOP of one training image at a side
    gflop_per_image: Callable[[int], float] = lambda _side: 0.0
    frozen_norms: list[nn.Module] = field(default_factory=list)  # kept in eval mode
    # given this rank's answer, True when the loss is finite on every rank, so that all ranks
    # skip or stop together
    all_finite: Callable[[bool], bool] = lambda finite: finite

    def replan(self, schedule: LrSchedule, sides: SideSchedule | None) -> None:
        """Follow schedules laid out anew (a budget planned the run's steps)."""
        self.schedule, self.sides = schedule, sides

    def keep_frozen(self, norms: list[nn.Module]) -> None:
        """Hold these BatchNorm layers in eval mode while training (frozen stages)."""
        self.frozen_norms = norms


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation RNG of one epoch: a pure function of (seed, epoch), so resumes match."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch + 1)


def train_step(
    ctx: StepContext, inputs: Tensor, labels: Tensor, step: int, gen: torch.Generator
) -> tuple[float, int] | None:
    """One optimiser step; returns (loss, correct predictions), or None when a non-finite loss
    was skipped. Both are read from the device at once, before the backward pass is queued:
    one wait per step, and a GPU runs the backward pass while the next batch is prepared.
    With MixUp/CutMix, correct predictions are counted against the images' own labels."""
    for group in ctx.optimizer.param_groups:
        group["lr"] = ctx.schedule.lr(step) * group.get("lr_mult", 1.0)
    mixed = ctx.mixer(inputs, labels, gen) if ctx.mixer is not None else None
    with ctx.autocast():
        if mixed is None:
            logits = ctx.model(inputs)  # (N, num_classes)
            loss = ctx.criterion(logits, labels)
        else:
            logits = ctx.model(mixed.inputs)
            loss = mixed.lam * ctx.criterion(logits, labels)
            loss = loss + (1 - mixed.lam) * ctx.criterion(logits, mixed.other_labels)
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
    if ctx.ema is not None:
        ctx.ema.update()
    return loss_value, int(correct_count)


def partial_epoch_record(stats: EpochStats, gen: torch.Generator, seconds: float) -> dict[str, Any]:
    """What a checkpoint keeps of an epoch cut short: its sums, its augmentation RNG, its time."""
    return {**vars(stats), "interrupted": False, "generator": gen.get_state(), "seconds": seconds}


def never() -> bool:
    return False


@dataclass
class EpochHooks:
    """What the epoch loop asks after each step: stop now? save now (and how)?"""

    stop_requested: Callable[[], bool] = never
    save_due: Callable[[], bool] = never
    save: Callable[[EpochStats], None] = lambda _stats: None
    after_step: Callable[[EpochStats], None] = lambda _stats: None
    progress: bool = True
    desc: str = "train"


def train_one_epoch(
    ctx: StepContext,
    batches: Batches,
    transform: BatchTransform,
    gen: torch.Generator,
    first_step: int,
    total: int,
    stats: EpochStats | None = None,
    hooks: EpochHooks | None = None,
) -> EpochStats:
    """Train on ``batches`` until they run out or ``hooks.stop_requested()`` turns true after
    a step; ``hooks.save(stats)`` runs whenever ``hooks.save_due()`` does.

    ``stats`` carries the sums of a partly done epoch when resuming it; the returned stats are
    cumulative and ``interrupted`` says whether the epoch was cut short.
    """
    hooks = hooks or EpochHooks()
    ctx.model.train()
    for norm in ctx.frozen_norms:  # frozen stages keep their pretrained statistics
        norm.eval()
    stats = stats or EpochStats()
    disable = None if hooks.progress else True
    bar = tqdm(
        batches, total=total, initial=stats.steps, desc=hooks.desc, leave=False, disable=disable
    )
    for images, labels in bar:
        step = first_step + stats.steps
        inputs = transform(images, gen, ctx.sides.side(step) if ctx.sides else None)
        result = train_step(ctx, inputs, labels, step, gen)
        stats.steps += 1
        stats.gflop += len(labels) * ctx.gflop_per_image(inputs.shape[-1])
        if result is None:
            stats.skipped += 1
        else:
            loss, correct = result
            stats.loss_sum += loss * len(labels)
            stats.correct += correct
            stats.seen += len(labels)
            bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.accuracy:.4f}")
        hooks.after_step(stats)
        if hooks.stop_requested():
            stats.interrupted = stats.steps < total
            break
        if stats.steps < total and hooks.save_due():
            hooks.save(stats)
    bar.close()
    return stats


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
