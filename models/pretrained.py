"""Starting from pretrained weights: torchvision's ImageNet ResNet-18, a torchvision
``state_dict`` file, or one of this repo's checkpoints.

Parameter names match torchvision's, so everything but ``fc`` loads strictly; ``fc`` keeps its
fresh initialisation, sized for the data set's classes. Files saved before BatchNorm counted
its batches lack ``num_batches_tracked``, which only matters when BatchNorm momentum is None.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor, nn

from utils.checkpoint import load_checkpoint, scored_weights
from utils.errors import CheckpointError, ConfigError

IMAGENET = "imagenet"
IMAGENET_SIDE = 224  # the input side the ImageNet weights were trained at
HEAD = "fc."


def imagenet_state_dict() -> dict[str, Tensor]:
    """torchvision's ``ResNet18_Weights.IMAGENET1K_V1``, through its own download and cache."""
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=False)
    except Exception as err:  # URLError, a proxy's HTTP error, a corrupt cache ...
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(
            f"model.pretrained=imagenet: the download failed ({reason}); offline, fetch "
            f"{weights.url} on another machine and set model.pretrained to that file"
        ) from None


def file_state_dict(path: Path) -> dict[str, Tensor]:
    """A torchvision ``state_dict`` saved with ``torch.save``, or this repo's checkpoint
    (its evaluated weights: the moving average where it kept one)."""
    if not path.is_file():
        raise ConfigError(f"model.pretrained: {path} not found; give a file, imagenet or null")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"model.pretrained: {path} is not a weights file: {reason}") from None
    if isinstance(loaded, dict) and "format_version" in loaded:
        return scored_weights(load_checkpoint(path))
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointError(f"model.pretrained: {path} holds no state_dict of tensors")
    return loaded


def pretrained_state_dict(source: str) -> dict[str, Tensor]:
    return imagenet_state_dict() if source == IMAGENET else file_state_dict(Path(source))


def load_backbone(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load every weight of ``state`` but the head into ``model``, strictly: a key missing
    on either side or a shape that differs is one error naming it."""
    own = model.state_dict()
    backbone = {k: v for k, v in state.items() if not k.startswith(HEAD)}
    for key, tensor in backbone.items():
        if key in own and own[key].shape != tensor.shape:
            raise ConfigError(
                f"model.pretrained={source}: {key} is {list(tensor.shape)} there but "
                f"{list(own[key].shape)} here (is model.stem the one it was trained with?)"
            )
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    missing = [k for k in missing if not k.startswith(HEAD) and "num_batches_tracked" not in k]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        side = "missing from" if missing else "unknown to"
        raise ConfigError(f"model.pretrained={source}: {first} is {side} the file's weights")
