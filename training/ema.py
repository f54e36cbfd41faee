"""An exponential moving average of the weights, the model that validation and best.pt use.

``torch.optim.swa_utils.AveragedModel`` with ``use_buffers=True`` averages the BatchNorm
running statistics too, so the average needs no extra pass over the data before it is scored.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """``average = decay * average + (1 - decay) * weights`` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.source = model
        self.averaged = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def update(self) -> None:
        self.averaged.update_parameters(self.source)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
