"""Timing a training pass, for the choices a run makes by measuring (precision, stage layout)."""

from __future__ import annotations

import time
from collections.abc import Callable

# Probes time passes of at most this many images: enough to rank the options, cheap to run.
PROBE_MAX_BATCH = 64


def best_seconds(one_pass: Callable[[], None], repeats: int = 3) -> float:
    """The fastest of ``repeats`` timed calls of ``one_pass``, after one untimed call that
    sets up kernels."""
    one_pass()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        one_pass()
        times.append(time.perf_counter() - start)
    return min(times)
