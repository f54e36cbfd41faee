"""A one-line description of the machine a run used, for result tables."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_hardware(device: torch.device) -> str:
    """E.g. "cpu: AMD EPYC 9R45 (2 cores), torch 2.14.1"."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return f"cuda: {name} x{torch.cuda.device_count()}, torch {torch.__version__}"
    return f"{device.type}: {cpu_model()} ({os.cpu_count()} cores), torch {torch.__version__}"
