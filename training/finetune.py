"""Fine-tuning: settle what a pretrained start implies, load the pretrained backbone, and keep
stages fixed while the new head (and later the rest) learns.

A frozen stage's parameters stop requiring gradients, so the optimiser, which skips
parameters without a gradient, neither moves nor decays them; its BatchNorm layers stay in
eval mode, so their running statistics stay those of the pretrained weights.
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from tqdm import tqdm

from models.pretrained import IMAGENET, IMAGENET_SIDE, load_backbone, pretrained_state_dict
from training.distributed import Distributed
from utils.config import Config
from utils.errors import ConfigError


def with_pretrained_defaults(cfg: Config) -> Config:
    """Settle what ``model.pretrained`` decides: with ImageNet weights the input side defaults
    to theirs (224) and ``data.normalization: auto`` to ImageNet's mean and std; otherwise
    auto means the training split's own. The resolved config is the one the run saves."""
    imagenet = cfg.model.pretrained == IMAGENET
    data = cfg.data
    if data.normalization == "auto":
        data = replace(data, normalization="imagenet" if imagenet else "dataset")
    if imagenet and data.image_size is None:
        data = replace(data, image_size=IMAGENET_SIDE)
    return replace(cfg, data=data)


def start_from_pretrained(
    model: nn.Module, source: str, num_classes: int, dist: Distributed
) -> None:
    """Load a pretrained backbone; ``fc`` stays freshly made for ``num_classes``."""
    load_backbone(model, pretrained_state_dict(source), source)
    if dist.is_main:
        tqdm.write(f"weights from {source}, all but fc, which is re-made for {num_classes} classes")


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


def frozen_norms_for_epoch(
    cfg: Config, model: nn.Module, epochs_done: int, dist: Distributed
) -> list[nn.Module]:
    """Freeze or unfreeze ``model.freeze`` stages for the epoch about to begin: frozen until
    ``train.unfreeze_epoch`` (1-based) begins. Returns the BatchNorm layers to keep in eval
    mode."""
    stages = cfg.model.frozen_stages
    if not stages:
        return []
    if dist.enabled:  # DDP fixes the parameters that get gradients at start
        raise ConfigError("model.freeze is for single-process runs; unset it under torchrun")
    until = cfg.train.unfreeze_epoch
    frozen = until is None or epochs_done + 1 < until
    if not frozen and epochs_done + 1 == until and dist.is_main:
        tqdm.write(f"epoch {until}: {', '.join(stages)} unfrozen")
    return set_frozen(model, stages, frozen)
