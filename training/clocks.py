"""The two clocks of a run: the seconds an epoch has taken, and when the next save is due."""

from __future__ import annotations

import time


class Stopwatch:
    """Seconds spent on an epoch, counting those before a stop when it is resumed."""

    def __init__(self, prior_seconds: float = 0.0) -> None:
        self.prior_seconds = prior_seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.prior_seconds + time.perf_counter() - self.start


class SaveClock:
    """Says when ``minutes`` have passed since it was last restarted; never, for None."""

    def __init__(self, minutes: float | None) -> None:
        self.seconds = None if minutes is None else minutes * 60
        self.restart()

    def restart(self) -> None:
        self.since = time.monotonic()

    def due(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.since >= self.seconds
