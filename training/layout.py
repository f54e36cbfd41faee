"""Memory layout per residual stage: channels_last, except where NCHW is clearly faster.

channels_last is the faster layout for convolutions on GPUs and for most layers on CPUs. On
CPUs, oneDNN's kernels for small maps with many channels can be faster in NCHW: here, the
cifar stem's layer4 (512 channels at 4x4, bf16) trains faster in NCHW, which makes the
whole step about 1.04-1.06x faster (benchmarks/throughput.py). So on CPU, each stage's forward
and backward are timed in both layouts with its real input shape, and a stage leaves
channels_last only when NCHW wins by ``NCHW_MIN_SPEEDUP``. The choice is recorded in the run
and kept on resume.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from training.timing import PROBE_MAX_BATCH, best_seconds
from utils.device import autocast_factory

STAGES = ("layer1", "layer2", "layer3", "layer4")
NCHW_MIN_SPEEDUP = 1.15


def stage_input_shapes(model: nn.Module, image_side: int, batch: int) -> dict[str, list[int]]:
    """The input shape of each residual stage for a batch of ``image_side`` images."""
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
            model.eval()(torch.zeros(2, 3, image_side, image_side, device=_device_of(model)))
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
        _make_nchw(stage)
    with torch.random.fork_rng(devices=[]):  # leave the run's random stream untouched
        inputs = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    inputs.requires_grad_()  # as inside the network: the stage's input gradient is needed
    autocast = autocast_factory(precision, device)

    def one_pass() -> None:
        with autocast():
            output = stage(inputs)
        output.float().sum().backward()

    return best_seconds(one_pass)


def probe_nchw_stages(model: nn.Module, image_side: int, batch: int, precision: str) -> list[str]:
    """The stages that train at least ``NCHW_MIN_SPEEDUP`` times faster in NCHW, timed on at
    most ``PROBE_MAX_BATCH`` images."""
    shapes = stage_input_shapes(model, image_side, min(batch, PROBE_MAX_BATCH))
    faster = []
    for name in STAGES:
        stage = getattr(model, name)
        channels_last = seconds_per_pass(stage, shapes[name], True, precision)
        nchw = seconds_per_pass(stage, shapes[name], False, precision)
        if channels_last >= NCHW_MIN_SPEEDUP * nchw:
            faster.append(name)
    return faster


def _input_to_nchw(_stage: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    return (args[0].contiguous(),)


def _output_to_channels_last(_stage: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


def apply_layout(model: nn.Module, nchw_stages: list[str]) -> nn.Module:
    """channels_last for ``model``, NCHW inside the named stages: their inputs are converted
    on the way in and their outputs on the way out (autograd converts the gradients)."""
    model = model.to(memory_format=torch.channels_last)
    for name in nchw_stages:
        _make_nchw(getattr(model, name))
    return model


def _make_nchw(stage: nn.Module) -> None:
    stage.to(memory_format=torch.contiguous_format)
    stage.register_forward_pre_hook(_input_to_nchw)
    stage.register_forward_hook(_output_to_channels_last)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
