"""The CUDA path, where a GPU is present (skipped elsewhere; benchmarks/gpu_check.sh runs
these on a GPU machine): bf16 and fp16 steps, deterministic runs that repeat bitwise, a run
moved between GPU and CPU, predict and export from a GPU-trained checkpoint, and torchrun with
one process per GPU. The torchrun and optimiser checks at the top run everywhere."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from models import create_model
from tests.conftest import REPO, CliRunner, tiny_config
from tests.test_host_reads import AUGMENT, batches
from training.distributed import check_enough_gpus
from training.loop import StepContext, epoch_generator, train_one_epoch
from training.optimizer import WeightAverage, build_optimizer
from training.schedule import LrSchedule
from training.trainer import fit
from utils.checkpoint import load_checkpoint, load_state
from utils.cli import run_cli
from utils.config import OptimConfig, ScheduleConfig
from utils.errors import UserError

ON_CUDA = ("train.device=cuda",)


def test_more_torchrun_processes_than_gpus_is_one_error_line() -> None:
    with pytest.raises(UserError, match=r"3 processes on this machine, but it has 2 GPU\(s\)"):
        check_enough_gpus(3, 2)
    check_enough_gpus(2, 2)  # one process per GPU: fine


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_only_the_first_process_of_a_machine_prints_the_gpu_count_error(
    local_rank: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every torchrun process finds too few GPUs; the user reads the line once."""
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: check_enough_gpus(2, 1))
    assert stop.value.code == 2
    printed = capsys.readouterr().err
    assert ("but it has 1 GPU(s)" in printed) == (local_rank == "0")


def test_a_resumed_optimizer_keeps_the_implementation_it_was_built_with() -> None:
    """The saving run's foreach/fused flags are not loaded with its state: a run moved from
    CPU to CUDA keeps the fused step, and fp16's scaler never meets foreach."""
    model = create_model(num_classes=10, stem="cifar")
    saved = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    saved.step()
    resumed = build_optimizer(model, OptimConfig(lr=0.1, momentum=0.9), 0.1)
    load_state(resumed, {"optimizer": saved.state_dict()}, "optimizer")
    assert resumed.param_groups[0]["foreach"] is True  # as built on the CPU, not False
    first = next(model.parameters())
    momentum = resumed.state[first]["momentum_buffer"]
    assert torch.equal(momentum, saved.state[first]["momentum_buffer"])


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_cuda_run_learns_in_each_precision(tmp_path: Path, precision: str) -> None:
    cfg = tiny_config("best", tmp_path, *ON_CUDA, f"train.precision={precision}", "train.epochs=3")
    state = fit(cfg, tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["fast_path"]["precision"] == precision
    assert (checkpoint["grad_scaler"] is not None) == (precision == "fp16")  # the loss scale
    assert state.history[-1]["train_acc"] > 0.3  # 10 classes: chance is 0.1


@pytest.mark.cuda
@pytest.mark.parametrize("config", ["best", "optimized"])  # the cifar and imagenet stems
def test_deterministic_cuda_runs_repeat_bitwise(tmp_path: Path, config: str) -> None:
    sets = (*ON_CUDA, "train.deterministic=true", "train.epochs=2", "train.precision=bf16")
    weights = []
    for name in ("a", "b"):
        fit(tiny_config(config, tmp_path, *sets), tmp_path / name)
        weights.append(load_checkpoint(tmp_path / name / "last.pt")["model"])
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


@pytest.mark.cuda
def test_a_run_moves_from_gpu_to_cpu_and_back(tmp_path: Path, run_in_process: CliRunner) -> None:
    cfg = tiny_config("optimized", tmp_path, *ON_CUDA, "train.epochs=3")
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    on_cpu = tiny_config("optimized", tmp_path, "train.epochs=3")  # TINY trains on the CPU
    fit(on_cpu, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"), 1)
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    args = ("--ckpt", str(tmp_path / "run" / "best.pt"), "--device", "cpu")
    assert run_in_process("evaluate.py", *args, cwd=tmp_path).returncode == 0


@pytest.mark.cuda
def test_predict_and_export_a_cuda_trained_checkpoint(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    fit(tiny_config("best", tmp_path, *ON_CUDA, "train.epochs=1"), tmp_path / "run")
    best = str(tmp_path / "run" / "best.pt")
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    proc = run_in_process("predict.py", "--ckpt", best, str(tmp_path / "red.png"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    export = ("--ckpt", best, "--format", "pt2", "--output", str(tmp_path / "m.pt2"))
    assert run_in_process("export.py", *export, cwd=tmp_path).returncode == 0


@pytest.mark.cuda
@pytest.mark.slow
def test_torchrun_with_one_process_per_gpu(tmp_path: Path) -> None:
    gpus = torch.cuda.device_count()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sets = ["data.synthetic_samples=320", "train.epochs=1", "train.device=cuda"]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={gpus}", str(REPO / "train.py"), "--config", "smoke.yaml",
        "--run-name", "ddp", *[x for s in sets for x in ("--set", s)],
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((tmp_path / "checkpoints" / "ddp" / "summary.json").read_text())
    assert f"x{gpus}" in summary["hardware"]
    too_many = [*command[:4], f"--nproc_per_node={gpus + 1}", *command[5:]]
    proc = subprocess.run(too_many, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.count(f"but it has {gpus} GPU(s)") == 1


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_steps_wait_for_the_gpu_only_at_reads(precision: str) -> None:
    """16 steps with ``sync_every=8``: augmentation, fused SGD (with the fp16 loss scale), the
    EMA and the loss sums all stay on the GPU, so the only synchronisations are the 2 reads."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = create_model(num_classes=10, stem="cifar").to(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    ctx = StepContext(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True),
        criterion=torch.nn.CrossEntropyLoss(label_smoothing=0.1),
        schedule=LrSchedule(ScheduleConfig(name="onecycle"), 0.01, 1, 100),
        autocast=lambda: torch.autocast("cuda", dtype=dtype),
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
        ema=WeightAverage(model, 0.9),
        sync_every=8,
    )
    on_gpu = [(images.to(device), labels.to(device)) for images, labels in batches(18)]
    train_one_epoch(ctx, on_gpu[:2], AUGMENT, epoch_generator(0, 0, device), 0, 2)  # warm-up
    torch.cuda.synchronize()
    gen = epoch_generator(0, 1, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            stats = train_one_epoch(ctx, on_gpu[2:], AUGMENT, gen, 2, 16)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 2, [str(w.message) for w in syncs]
    assert stats.steps == 16 and stats.seen == 128
