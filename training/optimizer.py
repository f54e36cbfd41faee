"""The optimiser: SGD with momentum, its parameters grouped by weight decay and lr multiplier;
and the weight average that follows its steps.

``WeightAverage``, an exponential moving average of the weights, is the model that
validation and best.pt use. It lives in a ``torch.optim.swa_utils.AveragedModel`` (so
checkpoints keep its state-dict layout) and covers the BatchNorm running statistics too, so
it needs no extra pass over the data before it is scored. The update is done here rather than by
``AveragedModel.update_parameters``, which reads its update counter on the host, and on a GPU
waits for the device every step; this one counts updates on the host and never waits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

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


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every optimiser step; the
    first update copies the weights."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.source = model
        self.decay = decay
        self.averaged = AveragedModel(model, use_buffers=True)  # n_averaged stays on the CPU
        self.updates = 0

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self) -> None:
        averages, weights = tensors(self.module), tensors(self.source)
        if self.updates == 0:
            torch._foreach_copy_(averages, weights)
        else:
            floats, counters = [], []
            for pair in zip(averages, weights, strict=True):
                (floats if pair[0].is_floating_point() else counters).append(pair)
            torch._foreach_lerp_([a for a, _ in floats], [w for _, w in floats], 1 - self.decay)
            for average, weight in counters:  # BatchNorm's num_batches_tracked
                average.copy_(average * self.decay + weight * (1 - self.decay))
        self.updates += 1
        self.averaged.n_averaged += 1

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
        self.updates = int(self.averaged.n_averaged)


def tensors(module: nn.Module) -> list[torch.Tensor]:
    """The parameters, then the buffers, of ``module``, detached."""
    return [t.detach() for t in (*module.parameters(), *module.buffers())]
