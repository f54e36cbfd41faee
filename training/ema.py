"""An exponential moving average of the weights, the model that validation and best.pt use.

The average lives in a ``torch.optim.swa_utils.AveragedModel`` (so checkpoints keep its
state-dict layout) and covers the BatchNorm running statistics too, so it needs no extra pass
over the data before it is scored. The update is done here rather than by
``AveragedModel.update_parameters``, which reads its update counter on the host, and on a GPU
waits for the device every step; this one counts updates on the host and never waits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


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
