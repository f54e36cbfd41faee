"""Early stopping on a metric that should go down (validation loss)."""

from __future__ import annotations

import math
from typing import Any


class EarlyStopping:
    """Stop after ``patience`` epochs without an improvement larger than ``min_delta``."""

    def __init__(self, patience: int, min_delta: float = 0.0, enabled: bool = True) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.enabled = enabled
        self.best = math.inf
        self.bad_epochs = 0

    def update(self, value: float) -> bool:
        """Record this epoch's ``value``; return True when training should stop."""
        if value < self.best - self.min_delta:
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.enabled and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
