"""The learning rate and the training input side as pure functions of the global step.

A schedule holds no state besides the step, so resuming needs only the step count, and the
checkpoint stays plain tensors and numbers.
"""

from __future__ import annotations

import math

from utils.config import Config, ScheduleConfig
from utils.errors import ConfigError


class LrSchedule:
    """``lr(step)`` for constant, step, cosine and one-cycle schedules, with linear warmup."""

    def __init__(
        self,
        cfg: ScheduleConfig,
        base_lr: float,
        epochs: int,
        steps_per_epoch: int,
        total_steps: int | None = None,
    ) -> None:
        """Laid out over ``epochs`` x ``steps_per_epoch`` steps, or ``total_steps`` when given
        (a budget that ends inside an epoch)."""
        self.cfg = cfg
        self.base_lr = base_lr
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = max(1, total_steps or epochs * steps_per_epoch)
        self.warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)

    def factor(self, step: int) -> float:
        """The multiplier on ``base_lr`` at ``step`` (0-based)."""
        cfg = self.cfg
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "step":
            return cfg.gamma ** (step // (cfg.step_epochs * self.steps_per_epoch))
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        progress = min(progress, 1.0)
        if cfg.name == "cosine":
            cosine = 0.5 * (1 + math.cos(math.pi * progress))
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine
        # onecycle (a triangle): linear ramp up to the peak, then linear decay to the floor
        peak, start = cfg.peak_fraction, cfg.start_ratio
        if progress < peak:
            return start + (1 - start) * progress / peak
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * (1 - progress) / (1 - peak)

    def lr(self, step: int) -> float:
        return self.base_lr * self.factor(step)


SIDE_MULTIPLE = 4  # progressive sides are rounded down to this, so few shapes are compiled


class SideSchedule:
    """``side(step)``: the training input side under progressive resizing. It grows linearly
    from ``start_side`` at the first step to ``full_side`` at ``until`` (a fraction of the
    steps), rounded down to a multiple of 4, and stays at ``full_side`` from there; without a
    ``start_side`` it is always ``full_side``."""

    def __init__(
        self, full_side: int, total_steps: int, start_side: int | None, until: float
    ) -> None:
        self.full_side = full_side
        self.start_side = start_side
        self.ramp_steps = until * max(1, total_steps)

    def side(self, step: int) -> int:
        if self.start_side is None or step >= self.ramp_steps:
            return self.full_side
        side = self.start_side + (self.full_side - self.start_side) * step / self.ramp_steps
        return max(self.start_side, int(side) // SIDE_MULTIPLE * SIDE_MULTIPLE)


def side_schedule(cfg: Config, full_side: int, total_steps: int) -> SideSchedule | None:
    """Progressive resizing over ``total_steps``; None when ``data.progressive_from`` is off."""
    start = cfg.data.progressive_from
    if start is None:
        return None
    if start >= full_side:
        raise ConfigError(
            f"data.progressive_from: {start} is not below the input side, {full_side}; lower "
            "it or unset it"
        )
    return SideSchedule(full_side, total_steps, start, cfg.data.progressive_until)
