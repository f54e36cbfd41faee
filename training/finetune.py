"""Fine-tuning: settle what a pretrained start implies, and load the pretrained backbone.
Keeping stages frozen for a while is ``training/freeze.py``."""

from __future__ import annotations

from dataclasses import replace

from torch import nn
from tqdm import tqdm

from models.pretrained import IMAGENET, IMAGENET_SIDE, load_backbone, pretrained_state_dict
from training.distributed import Distributed
from utils.config import Config


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
