"""Choosing the CPU fast path by measuring, not by assuming: bf16 or fp32, and the stages
that train faster in NCHW than in channels_last.

On a CPU with native bf16, bf16 autocast is much faster for compute-bound models (the cifar
stem at 32 px: about 3x) but no faster for overhead-bound ones (the seed stem at 32 px, whose
feature maps are 8x8 and smaller), so a few timed training steps of the actual model and
input side decide; bf16 must win clearly, since fp32 is the more exact. channels_last is the
faster layout for most layers, but oneDNN's kernels for small maps with many channels can be
faster in NCHW (the cifar stem's layer4 at 4x4 in bf16: the whole step 1.04-1.06x faster), so
each residual stage is timed in both layouts with its real input shape and leaves
channels_last only when NCHW wins by ``NCHW_MIN_SPEEDUP``. Under torchrun rank 0 measures and
every rank takes its answer (parameter layouts must agree for the gradient all-reduce).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from models.layout import STAGES, make_nchw
from training.distributed import Distributed
from utils.config import TrainConfig
from utils.device import FastPath, autocast_factory, resolve_precision

PROBE_MAX_BATCH = 64  # timed passes use at most this many images: enough to rank the options
BF16_MIN_SPEEDUP = 1.1
NCHW_MIN_SPEEDUP = 1.15
StepTimer = Callable[[str], float]


def choose_fast_path(
    cfg: TrainConfig,
    device: torch.device,
    dist: Distributed,
    model: nn.Module,
    input_side: int,
    batch: int,
) -> FastPath:
    """The precision (timed on a bf16 CPU for ``auto``) and, on CPU with
    ``layout_probe``, the stages to keep in NCHW, for a new run of ``model``. Rank 0 times
    both and sends its answers to the other ranks in one exchange."""
    precision = resolve_precision(cfg.precision, device)
    time_precision = cfg.precision == "auto" and device.type == "cpu" and precision == "bf16"
    time_layout = cfg.channels_last and device.type == "cpu" and cfg.layout_probe
    bf16, stages = precision == "bf16", []
    if dist.is_main and time_precision:
        timer = time_training_step(
            lambda: copy.deepcopy(model), input_side, batch, cfg.channels_last
        )
        bf16 = faster_precision(timer) == "bf16"
    if dist.is_main and time_layout:
        stages = probe_nchw_stages(model, input_side, batch, "bf16" if bf16 else "fp32")
    answers = dist.broadcast_from_main([bf16, *(name in stages for name in STAGES)])
    if time_precision:
        precision = "bf16" if answers[0] else "fp32"
    nchw = [name for name, keep in zip(STAGES, answers[1:], strict=True) if keep]
    return FastPath(precision, cfg.channels_last, tuple(nchw))


def best_seconds(one_pass: Callable[[], None], repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls of ``one_pass``, after one untimed call that
    sets up kernels."""
    one_pass()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
    return min(times)


def wants_probe(requested: str, device: torch.device) -> bool:
    """True for ``auto`` on a CPU that runs bf16 natively: the case to measure (as
    ``choose_fast_path`` decides it from the resolved precision)."""
    return (
        requested == "auto" and device.type == "cpu" and resolve_precision("auto", device) == "bf16"
    )


def time_training_step(
    make_model: Callable[[], nn.Module], input_side: int, batch: int, channels_last: bool
) -> StepTimer:
    """A function giving the best-of-3 seconds of one forward + backward in a precision, on
    at most ``PROBE_MAX_BATCH`` images."""
    batch = min(batch, PROBE_MAX_BATCH)

    def seconds(precision: str) -> float:
        # inputs and dropout draw random numbers: leave the run's stream untouched
        with torch.random.fork_rng(devices=[]):
            model = make_model().train()
            inputs = torch.randn(batch, 3, input_side, input_side)
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


def faster_precision(step_seconds: StepTimer) -> str:
    """bf16 when it is at least ``BF16_MIN_SPEEDUP`` times faster than fp32, else fp32."""
    speedup = step_seconds("fp32") / step_seconds("bf16")
    return "bf16" if speedup >= BF16_MIN_SPEEDUP else "fp32"


def stage_input_shapes(model: nn.Module, input_side: int, batch: int) -> dict[str, list[int]]:
    """The input shape of each residual stage for a batch of ``input_side`` images."""
    shapes: dict[str, list[int]] = {}
    hooks = [
        getattr(model, name).register_forward_pre_hook(
            lambda _module, args, name=name: shapes.__setitem__(name, [batch, *args[0].shape[1:]])
        )
        for name in STAGES
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, 3, input_side, input_side, device=_device_of(model)))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return shapes


def seconds_per_pass(
    stage: nn.Module, shape: list[int], channels_last: bool, precision: str
) -> float:
    """Best-of-3 seconds of one forward + backward of a copy of ``stage``, in channels_last
    or in NCHW (with the conversions in and out that NCHW costs inside the network)."""
    device = _device_of(stage)
    stage = copy.deepcopy(stage).train().to(memory_format=torch.channels_last)
    if not channels_last:
        make_nchw(stage)
    with torch.random.fork_rng(devices=[]):  # leave the run's random stream untouched
        inputs = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    inputs.requires_grad_()  # as inside the network: the stage's input gradient is needed
    autocast = autocast_factory(precision, device)

    def one_pass() -> None:
        with autocast():
            output = stage(inputs)
        output.float().sum().backward()

    return best_seconds(one_pass)


def probe_nchw_stages(model: nn.Module, input_side: int, batch: int, precision: str) -> list[str]:
    """The stages that train at least ``NCHW_MIN_SPEEDUP`` times faster in NCHW, timed on at
    most ``PROBE_MAX_BATCH`` images."""
    shapes = stage_input_shapes(model, input_side, min(batch, PROBE_MAX_BATCH))
    faster = []
    for name in STAGES:
        stage = getattr(model, name)
        channels_last = seconds_per_pass(stage, shapes[name], True, precision)
        nchw = seconds_per_pass(stage, shapes[name], False, precision)
        if channels_last >= NCHW_MIN_SPEEDUP * nchw:
            faster.append(name)
    return faster


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
