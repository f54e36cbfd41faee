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
from training.optimizer import WeightAverage
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
    # steps between reads of the losses from the device (each read waits for the device)
    sync_every: int = 1
    # each of this rank's flags OR-ed over all ranks, in one exchange, so that all ranks skip
    # or stop together
    any_rank: Callable[[list[bool]], list[bool]] = lambda flags: flags

    def replan(self, schedule: LrSchedule, sides: SideSchedule | None) -> None:
        """Follow schedules laid out anew (a budget planned the run's steps)."""
        self.schedule, self.sides = schedule, sides

    def keep_frozen(self, norms: list[nn.Module]) -> None:
        """Hold these BatchNorm layers in eval mode while training (frozen stages)."""
        self.frozen_norms = norms


def default_sync_every(device: torch.device) -> int:
    """Steps between reads of the losses: every step on a CPU, where a read waits for nothing;
    50 on an accelerator, which then runs that far ahead of the host."""
    return 1 if device.type == "cpu" else 50


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The augmentation RNG of one epoch: a pure function of (seed, epoch), so resumes match.
    It lives on the training device, so that drawing from it never copies to the device."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch + 1)


def restore_generator(gen: torch.Generator, state: Tensor) -> bool:
    """Continue ``gen`` from a saved state; False, leaving ``gen`` as it is, when the state is
    another kind of generator's (a CPU generator's state and a CUDA one's differ in size)."""
    if state.numel() != gen.get_state().numel():
        return False
    gen.set_state(state)
    return True


def train_step(
    ctx: StepContext, inputs: Tensor, labels: Tensor, step: int, gen: torch.Generator
) -> Tensor | None:
    """One optimiser step; returns the (loss, correct predictions) pair as a tensor on the
    device, not read, or None when a non-finite loss was skipped. Only
    ``train.nonfinite_loss=skip`` reads the loss here, since skipping must be decided before
    the update; otherwise ``PendingSteps`` reads many steps' pairs at once.
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
    pair = torch.stack([loss.detach().float(), correct.float()])
    if ctx.skip_nonfinite and ctx.any_rank([not math.isfinite(pair[0].item())])[0]:
        return None
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
    return pair


@dataclass
class PendingSteps:
    """Steps whose (loss, correct) pairs are still on the device. ``read_into`` fetches them
    all at once: the one wait for the device in ``sync_every`` steps."""

    steps: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    pairs: list[Tensor] = field(default_factory=list)

    def add(self, step: int, size: int, pair: Tensor) -> None:
        self.steps.append(step)
        self.sizes.append(size)
        self.pairs.append(pair)

    def read_into(self, stats: EpochStats) -> tuple[int, float] | None:
        """Add the pending steps to ``stats``, or return (step, loss) of the first whose loss
        is not finite and add nothing."""
        values = torch.stack(self.pairs).tolist() if self.pairs else []
        self.pairs = []
        for step, (loss, _) in zip(self.steps, values, strict=True):
            if not math.isfinite(loss):
                return step, loss
        for size, (loss, correct) in zip(self.sizes, values, strict=True):
            stats.loss_sum += loss * size
            stats.correct += int(correct)
            stats.seen += size
        self.steps, self.sizes = [], []
        return None


def nonfinite_loss_error(bad: tuple[int, float] | None, steps: list[int]) -> NonFiniteLossError:
    """The error for a loss gone NaN or Inf, here (``bad``) or in another process."""
    where = "a loss was not finite in another process"
    if bad is not None:
        where = f"loss is {bad[1]} at global step {bad[0]}"
    elif steps:
        where += f", at global steps {steps[0]}-{steps[-1]}"
    return NonFiniteLossError(
        f"{where}; lower optim.lr, or set train.nonfinite_loss=skip to skip such batches"
    )


def read_pending(ctx: StepContext, pending: PendingSteps, stats: EpochStats, stop: bool) -> bool:
    """Read the pending steps into ``stats`` and agree with the other ranks, in one exchange,
    on whether a loss went non-finite (raises) and whether to stop (returns)."""
    steps = pending.steps
    bad = pending.read_into(stats)
    nonfinite, stop = ctx.any_rank([bad is not None, stop])
    if nonfinite:
        raise nonfinite_loss_error(bad, steps)
    return stop


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
    # the steps this epoch trains, asked before each step (a time budget may plan again
    # inside an epoch); None: ``total``
    epoch_steps: Callable[[], int] | None = None
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
    """Train on ``batches`` until they run out, ``total`` steps are taken (as
    ``hooks.epoch_steps`` has it, where given) or ``hooks.stop_requested()`` turns true;
    ``hooks.save(stats)`` runs whenever ``hooks.save_due()`` does. Both are asked, and the
    losses checked, at reads: every ``ctx.sync_every`` steps of the epoch and at its end.

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
    pending = PendingSteps()
    for images, labels in bar:
        if hooks.epoch_steps is not None and (steps := hooks.epoch_steps()) != total:
            total = bar.total = steps
        if stats.steps >= total:
            break
        step = first_step + stats.steps
        inputs = transform(images, gen, ctx.sides.side(step) if ctx.sides else None)
        pair = train_step(ctx, inputs, labels, step, gen)
        stats.steps += 1
        stats.gflop += len(labels) * ctx.gflop_per_image(inputs.shape[-1])
        if pair is None:
            stats.skipped += 1
        else:
            pending.add(step, len(labels), pair)
        reading = stats.steps % ctx.sync_every == 0 or stats.steps == total
        stop = reading and read_pending(ctx, pending, stats, hooks.stop_requested())
        hooks.after_step(stats)  # sees the sums of the steps read so far
        if not reading:
            continue  # stop, save and the loss check wait for the next read
        if stop:
            stats.interrupted = stats.steps < total
            break
        bar.set_postfix(loss=f"{stats.loss:.4f}", acc=f"{stats.accuracy:.4f}")
        if stats.steps < total and hooks.save_due():
            hooks.save(stats)
    if pending.pairs:  # the batches ran out, or the end moved, before a read
        read_pending(ctx, pending, stats, False)
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
    """Mean cross-entropy (no label smoothing) and top-1 accuracy over all samples. The
    per-batch sums stay on the device until the end: one read, not one per batch."""
    sums, sizes = [], []
    for logits, labels in predict(model, batches, transform, autocast, total, "val", progress):
        loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
        sums.append(torch.stack([loss, (logits.argmax(1) == labels).sum().float()]))
        sizes.append(len(labels))
    stats = EpochStats()
    values = torch.stack(sums).tolist() if sums else []
    for size, (loss_sum, correct) in zip(sizes, values, strict=True):
        stats.loss_sum += loss_sum
        stats.correct += int(correct)
        stats.seen += size
    return stats
