"""Device and numeric precision choice, and the fast path of a run: its numeric precision and
memory layout, recorded in checkpoints.

A new run chooses the fast path once (``training/autotune.py`` times the options on CPU); the
checkpoint stores it as one entry, and a resumed run or an evaluation reads it back, so both
compute as the run trained.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from utils.errors import ConfigError


def resolve_device(name: str, setting: str = "train.device") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; anything else must be a usable torch device.
    Errors name ``setting``, where the user gave ``name``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{setting}: {name!r} is not a torch device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting}: cuda was asked for but no CUDA device is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting}: mps was asked for but MPS is not available")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``, so that a clock read next reads its time, not
    how fast the host queued it. Nothing to wait for on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def configure_cuda(device: torch.device, deterministic: bool) -> None:
    """On CUDA, let cuDNN time its kernels once per input shape and keep the fastest, or, for
    runs that must repeat bitwise, use deterministic kernels only (cuBLAS then needs a fixed
    workspace, set before its first use). An op with no deterministic CUDA kernel warns,
    naming itself, rather than stopping the run. Nothing changes on other devices."""
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matmul (AVX512-BF16 or AMX), where autocast pays off."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto`` is bf16 where the hardware runs it fast, else fp32; fp16 is CUDA only."""
    if name == "auto":
        if device.type == "cuda":
            # without including_emulation=False, pre-Ampere GPUs report (slow, emulated) bf16
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        if device.type == "cpu" and cpu_has_fast_bf16():
            return "bf16"
        return "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.precision: fp16 needs a CUDA device, not {device.type}")
    return name


def emulated_bf16_warning(precision: str, device: torch.device) -> str | None:
    """A warning when bf16 runs on a CPU without native bf16: autocast then emulates it and
    trains slower than fp32 (a plan pinned to bf16 on one machine, run on another)."""
    if precision != "bf16" or device.type != "cpu" or cpu_has_fast_bf16():
        return None
    return (
        "warning: precision bf16 on a CPU without native bf16 (no AVX512-BF16 or AMX) is "
        "emulated and slower than fp32; set train.precision=auto or fp32"
    )


def autocast_factory(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A zero-argument callable returning the autocast context for ``precision``."""
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


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
