"""What the machine can do, to hold training speed against: the FLOPs a training image costs and
the sustained matmul rate.

The peak is a median over a loop of at least a second at each of a few sizes, the best size
kept: a single best product can overstate what the machine sustains several times over.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Any

import torch

from training.compute import train_gflop_per_image
from utils.device import cpu_has_fast_bf16


def training_gflop_per_image(stem: str, size: int) -> float:
    """Forward + backward GFLOP of one image of a 10-class model with ``stem``."""
    args = {"arch": "resnet18", "num_classes": 10, "stem": stem, "dropout": 0.0}
    return train_gflop_per_image({**args, "zero_init_residual": False}, size)


PEAK_SIZES = (1024, 2048, 3072)
PEAK_MIN_SECONDS = 1.0


def sustained_gflops(n: int, dtype: torch.dtype, min_seconds: float = PEAK_MIN_SECONDS) -> float:
    """Median GFLOP/s of an n x n matmul repeated for at least ``min_seconds`` (after one
    untimed call): what the machine sustains, not its single best product."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times: list[float] = []
    while sum(times) < min_seconds or len(times) < 3:
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


@functools.cache
def matmul_peak(precision: str) -> dict[str, Any]:
    """The best sustained GFLOP/s over ``PEAK_SIZES`` and each size's figure, once per
    precision measured. Where bf16 is emulated (no AVX512-BF16 or AMX) it runs at well under
    1 GFLOP/s, so only a 256 x 256 product is timed there."""
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    sizes = PEAK_SIZES if precision == "fp32" or cpu_has_fast_bf16() else (256,)
    per_size = {n: round(sustained_gflops(n, dtype), 1) for n in sizes}
    best = max(per_size, key=per_size.__getitem__)
    return {"gflop_s": per_size[best], "size": best, "per_size": per_size}


def matmul_peak_gflops(precision: str) -> float:
    return matmul_peak(precision)["gflop_s"]
