"""Shared fixtures: the real configs shrunk to tiny synthetic data, and CLI runners."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import evaluation.report
from utils.cli import run_cli
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
    "train.device=cpu",  # the suite tests the CPU path on any machine; tests/test_cuda.py the GPU
]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, share the cores between the workers: each worker, and every process
    its tests start, gets cores / workers threads instead of all of them (oversubscribed
    threads slow every worker down)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def cpu_only_children(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scripts a test starts see no GPU, unless the test is marked ``cuda``: a config that
    leaves ``train.device: auto`` then trains on the CPU here too."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` run wherever CUDA is present and skip cleanly elsewhere."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


CliRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> CliRunner:
    """Like ``run_script(..., check=False)``, but calls the script's ``main`` in this process.

    For calls that do not train (error paths, evaluation, compare): a child process spends
    seconds importing torch, which for these is most of their time. The exit code and both
    streams are those ``run_cli`` produces, as in a child; an exception other than a user error
    propagates and fails the test, as a traceback would."""

    def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        module = importlib.import_module(Path(script).stem)
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [script, *args])
        monkeypatch.delenv("RESNET18_DATA_ROOT", raising=False)
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            run_cli(module.main)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], stop.value.code or 0, out, err)

    return run


@pytest.fixture
def real_data() -> Path:
    if not (REAL_DATA / "train").is_dir():
        pytest.skip(f"real CIFAR-10 JPEGs not found at {REAL_DATA}")
    return REAL_DATA


def record_fed_sides(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The image side evaluation feeds the model, one entry per ``evaluate_checkpoint`` call."""
    sides: list[int] = []
    real_run_predictions = evaluation.report.run_predictions

    def spy(model, loader, transform, *args):
        images, _ = next(iter(loader.batches()))
        sides.append(transform(images).shape[-1])
        return real_run_predictions(model, loader, transform, *args)

    monkeypatch.setattr(evaluation.report, "run_predictions", spy)
    return sides


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``path`` exists, failing if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """Mount small tmpfs file systems (a real full or read-only disk); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(size: int, *options: str) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        opts = ",".join([f"size={size}", *options])
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=False)
