"""A train/validation split carved from the training set with a fixed seed."""

from __future__ import annotations

import torch
from torch import Tensor


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
