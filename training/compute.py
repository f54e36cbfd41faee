"""Training compute in FLOPs: what one training image costs at an input side.

FLOPs are counted by torch's ``FlopCounterMode`` (matrix products and convolutions, forward
and backward) on a copy of the model built on the meta device, so counting allocates no
memory, draws no random numbers and takes well under a second per side.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import create_model


def train_gflop_per_image(model_args: dict[str, Any], side: int) -> float:
    """Forward + backward GFLOP of one ``side`` x ``side`` image through the model that
    ``model_args`` builds."""
    return _counted_gflop(tuple(sorted(model_args.items())), side)


@functools.cache
def _counted_gflop(model_args: tuple[tuple[str, Any], ...], side: int) -> float:
    with torch.device("meta"):
        model = create_model(**dict(model_args))
        images = torch.empty(2, 3, side, side)
    counter = FlopCounterMode(display=False)
    with counter:
        model(images).sum().backward()
    return counter.get_total_flops() / 2 / 1e9
