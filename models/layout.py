"""Memory layout per residual stage: channels_last, with chosen stages kept in NCHW.

channels_last is the faster layout for convolutions on GPUs and for most layers on CPUs, but
oneDNN's kernels for small maps with many channels can be faster in NCHW on a CPU (the cifar
stem's layer4 at 4x4, in bf16). Which stages to keep in NCHW is measured at the start of a run
(``training/autotune.py``); this module only applies a choice.
"""

from __future__ import annotations

import torch
from torch import nn

STAGES = ("layer1", "layer2", "layer3", "layer4")


def _input_to_nchw(_stage: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
    return (args[0].contiguous(),)


def _output_to_channels_last(_stage: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.contiguous(memory_format=torch.channels_last)


def make_nchw(stage: nn.Module) -> None:
    """Keep ``stage`` in NCHW inside a channels_last network: convert on the way in and out."""
    stage.to(memory_format=torch.contiguous_format)
    stage.register_forward_pre_hook(_input_to_nchw)
    stage.register_forward_hook(_output_to_channels_last)


def apply_layout(model: nn.Module, nchw_stages: list[str]) -> nn.Module:
    """channels_last for ``model``, NCHW inside the named stages: their inputs are converted
    on the way in and their outputs on the way out (autograd converts the gradients)."""
    model = model.to(memory_format=torch.channels_last)
    for name in nchw_stages:
        make_nchw(getattr(model, name))
    return model
