"""A train/validation split carved from the training set with a fixed seed."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from utils.errors import DataError


def split_indices(num_samples: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Shuffle ``0..num_samples-1`` with ``seed`` and cut off ``val_fraction`` for validation.

    The result depends only on its three arguments, so the split can be rebuilt anywhere;
    checkpoints also store the validation indices themselves.
    """
    num_val = round(num_samples * val_fraction)
    if not 0 < num_val < num_samples:
        raise ValueError(
            f"val_fraction {val_fraction} of {num_samples} samples leaves an empty split"
        )
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[num_val:].sort().values, order[:num_val].sort().values


def data_fingerprint(labels: Tensor) -> str:
    """The training set's image count and a hash of its labels in order.

    Stored validation indices only mean the same images on the same data in the same order:
    another copy (torchvision's CIFAR-10 against a class-sorted folder of the same images) or
    an image added or removed would silently move validation images into training. Images
    swapped within a class keep the fingerprint; that is the price of not hashing pixels.
    """
    digest = hashlib.sha256(labels.to(torch.int64).numpy().tobytes()).hexdigest()
    return f"{len(labels)} images, labels {digest[:16]}"


def check_same_data(recorded: str | None, found: str, root: str | None) -> None:
    """Refuse data whose fingerprint differs from the one a checkpoint recorded (if any)."""
    if recorded is not None and recorded != found:
        raise DataError(
            f"{root} is not the data this run was trained on (recorded: {recorded}; found: "
            f"{found}); its validation split would pick other images. Point --data-root at "
            "the training data"
        )
