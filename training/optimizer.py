"""The optimiser: SGD with momentum, its parameters grouped by weight decay."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from utils.config import OptimConfig


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """One group with ``weight_decay`` for every parameter (the seed recipe's L2), or, with
    ``norm_weight_decay`` set, BatchNorm weights and all biases in a second group with it."""
    if cfg.norm_weight_decay is None:
        return [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    norm, other = [], []
    for module in model.modules():
        is_norm = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for name, parameter in module.named_parameters(recurse=False):
            (norm if is_norm or name == "bias" else other).append(parameter)
    return [
        {"params": other, "weight_decay": cfg.weight_decay},
        {"params": norm, "weight_decay": cfg.norm_weight_decay},
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov when asked), multi-tensor updates."""
    return torch.optim.SGD(
        parameter_groups(model, cfg),
        lr=lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        foreach=True,
    )
