"""The fast path of a run: its numeric precision and memory layout, recorded in checkpoints.

A new run chooses it once (``training/autotune.py`` times the options on CPU); the checkpoint
stores it as one entry, and a resumed run or an evaluation reads it back, so both compute as
the run trained.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from utils.device import autocast_factory, resolve_precision
from utils.errors import ConfigError


@dataclass(frozen=True)
class FastPath:
    precision: str  # "fp32", "bf16" or "fp16", resolved for the device
    channels_last: bool = True
    nchw_stages: tuple[str, ...] = field(default=())  # with channels_last: stages kept NCHW

    def autocast(self, device: torch.device) -> Callable[[], AbstractContextManager]:
        return autocast_factory(self.precision, device)

    def describe(self) -> str:
        if not self.channels_last:
            return f"{self.precision} | NCHW"
        stages = f" ({', '.join(self.nchw_stages)} NCHW)" if self.nchw_stages else ""
        return f"{self.precision} | channels_last{stages}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "nchw_stages": list(self.nchw_stages),
        }

    def on(self, device: torch.device, strict: bool = True) -> FastPath:
        """This path where ``device`` can run it: NCHW stages are a CPU choice, and fp16 needs
        CUDA (``strict``: a ConfigError, as for a resume; else ``auto``, as for evaluation)."""
        try:
            precision = resolve_precision(self.precision, device)
        except ConfigError:
            if strict:
                raise
            precision = resolve_precision("auto", device)
        stages = self.nchw_stages if self.channels_last and device.type == "cpu" else ()
        return replace(self, precision=precision, nchw_stages=tuple(stages))


def recorded_fast_path(checkpoint: dict[str, Any]) -> FastPath:
    """The fast path a checkpoint recorded (older formats are upgraded as they load)."""
    stored = checkpoint["fast_path"]
    return FastPath(stored["precision"], stored["channels_last"], tuple(stored["nchw_stages"]))
