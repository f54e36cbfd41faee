"""Model architectures: the ResNet-18, its factory and its per-stage memory layout."""

from models.factory import ARCHITECTURES, create_model, model_args
from models.layout import STAGES, apply_layout
from models.resnet import ResNet, resnet18

__all__ = [
    "ARCHITECTURES",
    "STAGES",
    "ResNet",
    "apply_layout",
    "create_model",
    "model_args",
    "resnet18",
]
