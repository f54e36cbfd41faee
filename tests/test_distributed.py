"""Data parallelism on CPU with gloo: 2 processes on this machine."""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from data import create_data
from models import create_model
from tests.conftest import REPO, CliRunner
from training.distributed import Distributed
from training.loop import evaluate_loss_accuracy
from training.summary import summed_over_ranks
from utils.config import load_config

BATCH = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard_data(rank: int, world: int):
    cfg = load_config("baseline.yaml", ["data.dataset=synthetic", "data.synthetic_samples=256",
                                        f"data.batch_size={BATCH * (2 // world)}"])  # fmt: skip
    return create_data(cfg.data, 0, torch.device("cpu"), rank=rank, world_size=world)


def model_gradients(model: torch.nn.Module, data, step_model: torch.nn.Module) -> torch.Tensor:
    """Flattened gradients of one step on batch 0 of epoch 0 (BN in eval mode: no batch stats)."""
    images, labels = next(data.train.batches(0))
    step_model.eval()  # batch statistics differ between B and 2B; running statistics do not
    loss = torch.nn.functional.cross_entropy(step_model(data.train_transform(images)), labels)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(num_classes=10)
    data = shard_data(rank, world)
    grads = model_gradients(model, data, DistributedDataParallel(model))
    val = evaluate_loss_accuracy(model, data.val.batches(), data.eval_transform, torch.no_grad)
    totals = summed_over_ranks(Distributed(rank, rank, world), val)
    if rank == 0:
        torch.save({"grads": grads, "val": [totals.loss, totals.accuracy, totals.seen]}, out)
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one_process_with_double_batch(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = create_model(num_classes=10)
    data = shard_data(0, 1)
    single = model_gradients(model, data, model)
    ddp = torch.load(out, weights_only=True)
    # DDP averages per-rank mean gradients over B; one process takes the mean over 2B.
    assert torch.allclose(ddp["grads"], single, atol=1e-5, rtol=1e-4)
    val = evaluate_loss_accuracy(model, data.val.batches(), data.eval_transform, torch.no_grad)
    assert ddp["val"][2] == val.seen == len(data.val.labels)
    assert ddp["val"][1] == val.accuracy  # the same count of correct over the same count
    assert ddp["val"][0] == pytest.approx(val.loss, rel=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_resume_stop_together_and_evaluate(
    tmp_path: Path, run_in_process: CliRunner
) -> None:
    """One epoch under torchrun, then a resume under torchrun that early stopping ends at
    epoch 2 on both ranks (min_delta 100: no epoch counts as an improvement)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", str(REPO / "train.py")]  # fmt: skip
    sets = ["data.synthetic_samples=320", "train.epochs=1", "early_stopping.patience=1",
            "early_stopping.min_delta=100", "train.precision=fp32"]  # fmt: skip
    first = [
        "--config",
        "smoke.yaml",
        "--run-name",
        "ddp",
        *[x for s in sets for x in ("--set", s)],
    ]
    for args in (first, ["--resume", "checkpoints/ddp", "--set", "train.epochs=5"]):
        proc = subprocess.run([*torchrun, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "checkpoints" / "ddp"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["epochs_run"] == 2  # both ranks stopped at 2
    assert "x2" in summary["hardware"]
    logs = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    assert sorted(p.name for p in run.iterdir()) == sorted([
        ".lock", "best.pt", "config.yaml", "last.pt", "metrics.csv", "metrics.json",
        "summary.json", *logs,
    ])  # fmt: skip
    if logs:  # rank 0 alone logs: one event file per start (the run and its resume)
        assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    assert [row["epoch"] for row in json.loads((run / "metrics.json").read_text())] == [1, 2]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 2
    state = torch.load(run / "best.pt", weights_only=True)["model"]
    assert not any(key.startswith("module.") for key in state)
    report = run_in_process("evaluate.py", "--ckpt", "best.pt", cwd=tmp_path)
    assert "val set: 64 images" in report.stdout
    # best.pt (rank 0's weights and BatchNorm statistics) scores what validation logged
    scored = json.loads((run / "eval-val" / "metrics.json").read_text())
    assert scored["loss"] == pytest.approx(summary["best_val_loss"], rel=1e-5)
    assert scored["accuracy"] == summary["best_val_acc"]
