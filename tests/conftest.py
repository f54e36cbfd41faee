"""Shared fixtures: the real configs shrunk to tiny synthetic data, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from utils.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
REAL_DATA = REPO.parent / "shared" / "data" / "cifar10-jpg"

# Tiny, fast versions of the shipped configs: same pipeline, synthetic data, few epochs.
TINY = [
    "data.dataset=synthetic",
    "data.synthetic_samples=480",
    "data.val_fraction=0.25",
    "data.batch_size=48",
    "data.eval_batch_size=128",
    "train.epochs=2",
    "train.precision=fp32",  # auto measures bf16 against fp32, which can vary run to run
    "train.layout_probe=false",  # likewise a timing
]


def tiny_config(name: str, tmp_path: Path, *extra: str) -> Config:
    """A shipped config on tiny synthetic data writing into ``tmp_path``."""
    return load_config(name, [*TINY, f"output_dir={tmp_path}", *extra])


def run_script(
    script: str, *args: str, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python <script> <args>`` from the repo in ``cwd``; returns the finished process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RESNET18_DATA_ROOT", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {args} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEGs not found at {REAL_DATA}")
    return REAL_DATA
