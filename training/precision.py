"""Choosing bf16 or fp32 on CPU by measuring, not by assuming.

On a CPU with native bf16, bf16 autocast is much faster for compute-bound models (the cifar
stem at 32 px: about 3x here) but no faster for overhead-bound ones (the seed stem at 32 px,
whose feature maps are 8x8 and smaller). In ``auto`` mode a few timed training steps of the
actual model and input size decide; bf16 must win clearly, since fp32 is the more exact.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from training.timing import PROBE_MAX_BATCH, best_seconds
from utils.device import autocast_factory, resolve_precision

BF16_MIN_SPEEDUP = 1.1
StepTimer = Callable[[str], float]


def time_training_step(
    make_model: Callable[[], nn.Module], image_size: int, batch: int, channels_last: bool
) -> StepTimer:
    """A function giving the best-of-3 seconds of one forward + backward in a precision, on
    at most ``PROBE_MAX_BATCH`` images."""
    batch = min(batch, PROBE_MAX_BATCH)

    def seconds(precision: str) -> float:
        # model init, inputs and dropout draw random numbers: leave the run's stream untouched
        with torch.random.fork_rng(devices=[]):
            return _seconds(precision)

    def _seconds(precision: str) -> float:
        model = make_model().train()
        inputs = torch.randn(batch, 3, image_size, image_size)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        labels = torch.zeros(batch, dtype=torch.long)
        autocast = autocast_factory(precision, torch.device("cpu"))

        def one_pass() -> None:
            with autocast():
                loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()

        return best_seconds(one_pass)

    return seconds


def wants_probe(requested: str, device: torch.device) -> bool:
    """True for ``auto`` on a CPU that runs bf16 natively: the case to measure."""
    return (
        requested == "auto" and device.type == "cpu" and resolve_precision("auto", device) == "bf16"
    )


def faster_precision(step_seconds: StepTimer) -> str:
    """bf16 when it is at least ``BF16_MIN_SPEEDUP`` times faster than fp32, else fp32."""
    speedup = step_seconds("fp32") / step_seconds("bf16")
    return "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"
