"""Keeping stages of a pretrained model fixed while the new head (and later the rest) learns.

A frozen stage's parameters stop requiring gradients, so the optimiser, which skips
parameters without a gradient, neither moves nor decays them; its BatchNorm layers stay in
eval mode, so their running statistics stay those of the pretrained weights.
"""

from __future__ import annotations

from torch import nn


def stage_modules(model: nn.Module, stages: list[str]) -> list[nn.Module]:
    modules: list[nn.Module] = []
    for name in stages:
        modules += [model.conv1, model.bn1] if name == "stem" else [getattr(model, name)]
    return modules


def set_frozen(model: nn.Module, stages: list[str], frozen: bool) -> list[nn.Module]:
    """Freeze (or unfreeze) ``stages``; returns the BatchNorm layers to keep in eval mode."""
    norms = []
    for module in stage_modules(model, stages):
        for parameter in module.parameters():
            parameter.requires_grad_(not frozen)
        norms += [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return norms if frozen else []
