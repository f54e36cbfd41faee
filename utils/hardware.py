"""A one-line description of the machine a run used, for result tables."""

from __future__ import annotations

import os
import platform
import sys

import torch

from utils.device import cpu_has_fast_bf16


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> str:
    """The vector instructions torch runs on (AVX2, AVX512, ...) and whether bf16 is native.

    CPUs sold under one name ("AMD EPYC") differ here, and training speed with them: without
    native bf16, bf16 autocast is emulated and slower than fp32."""
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{capability}, native bf16" if cpu_has_fast_bf16() else capability


def describe_hardware(device: torch.device) -> str:
    """E.g. "cpu: AMD EPYC (2 cores, AVX2), torch 2.14.1"."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"cuda: {name} x{torch.cuda.device_count()}, torch {torch.__version__}"
    cores = f"{os.cpu_count()} cores"
    if device.type == "cpu":
        cores += f", {cpu_features()}"
    return f"{device.type}: {cpu_model()} ({cores}), torch {torch.__version__}"


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process so far; None where the OS does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
