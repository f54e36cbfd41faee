"""Model architectures. ``create_model`` builds one from its construction arguments."""

from __future__ import annotations

from typing import Any

from models.resnet import ResNet, resnet18

ARCHITECTURES = {"resnet18": resnet18}


def create_model(arch: str = "resnet18", **kwargs: Any) -> ResNet:
    """Build a model by name; ``kwargs`` are the constructor's (stored in checkpoints)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; available: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


__all__ = ["ARCHITECTURES", "ResNet", "create_model", "resnet18"]
