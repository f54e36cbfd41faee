"""The optimiser: SGD with momentum, its parameters grouped by weight decay and lr multiplier."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from utils.config import OptimConfig

HEAD = "fc"  # the layer a fine-tune re-makes; the rest is the pretrained backbone


def is_norm_or_bias(module: nn.Module, name: str) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or name == "bias"


def parameter_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """One group with ``weight_decay`` for every parameter (the seed recipe's L2), split when
    ``norm_weight_decay`` is set (BatchNorm weights and all biases get it) and when
    ``backbone_lr_mult`` is not 1 (everything but ``fc`` trains at that multiple of the lr;
    ``lr_mult`` in each group). Empty groups are left out."""
    if cfg.norm_weight_decay is None and cfg.backbone_lr_mult == 1.0:
        return [{"params": list(model.parameters()), "weight_decay": cfg.weight_decay}]
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for module_name, module in model.named_modules():
        in_head = module_name.split(".")[0] == HEAD
        lr_mult = 1.0 if in_head else cfg.backbone_lr_mult
        for name, parameter in module.named_parameters(recurse=False):
            decay = cfg.weight_decay
            if cfg.norm_weight_decay is not None and is_norm_or_bias(module, name):
                decay = cfg.norm_weight_decay
            groups.setdefault((decay, lr_mult), []).append(parameter)
    return [
        {"params": params, "weight_decay": decay, "lr_mult": lr_mult}
        for (decay, lr_mult), params in groups.items()
    ]


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov when asked): fused into one kernel per parameter group on
    CUDA, multi-tensor updates elsewhere. Parameters that do not require gradients (frozen
    stages) get none, and SGD leaves them as they are."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.SGD(
        parameter_groups(model, cfg),
        lr=lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        foreach=None if on_cuda else True,
        fused=True if on_cuda else None,
    )
