"""Building a model by name, and the construction arguments a checkpoint stores to rebuild it."""

from __future__ import annotations

from typing import Any

from models.resnet import ResNet, resnet18
from utils.config import ModelConfig

ARCHITECTURES = {"resnet18": resnet18}


def create_model(arch: str = "resnet18", **kwargs: Any) -> ResNet:
    """Build a model by name; ``kwargs`` are the constructor's (stored in checkpoints)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


def model_args(cfg: ModelConfig, num_classes: int) -> dict[str, Any]:
    """Construction arguments of the model; stored in checkpoints to rebuild it."""
    return {
        "arch": cfg.arch,
        "num_classes": num_classes,
        "stem": cfg.stem,
        "dropout": cfg.dropout,
        "zero_init_residual": cfg.zero_init_residual,
    }
