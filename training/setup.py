"""Building a run: device, data shard, model (layout, precision, DDP), optimiser, schedule.

Also the two choices made by timing at the start of a new run on CPU, bf16 or fp32
(``training/precision.py``) and the stages kept in NCHW (``training/layout.py``); a resumed
run passes in what it chose before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from data import DataBundle, create_data
from models import create_model
from training.distributed import Distributed
from training.early_stopping import EarlyStopping
from training.layout import STAGES, apply_layout, probe_nchw_stages
from training.loop import StepContext
from training.precision import faster_precision, time_training_step, wants_probe
from training.run_state import RunState, make_checkpoint, model_args
from training.schedule import LrSchedule
from utils.checkpoint import save_checkpoint
from utils.config import Config, OptimConfig
from utils.device import autocast_factory, resolve_device, resolve_precision
from utils.errors import ConfigError


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD with momentum; weight decay is L2 on every parameter, as in the seed recipe."""
    return torch.optim.SGD(
        model.parameters(),
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
        foreach=True,
    )


@dataclass
class Run:
    """The live objects of a training run."""

    cfg: Config
    run_dir: Path
    dist: Distributed
    device: torch.device
    precision: str
    nchw_stages: list[str]  # with channels_last: the stages kept in NCHW
    data: DataBundle
    model: nn.Module  # unwrapped: what checkpoints store and validation runs
    optimizer: torch.optim.Optimizer
    stopper: EarlyStopping
    ctx: StepContext  # its model is DDP-wrapped and/or compiled when configured

    def save(self, state: RunState, improved: bool = False) -> None:
        """Write last.pt (and best.pt when ``improved``); only rank 0 writes."""
        if not self.dist.is_main:
            return
        payload = make_checkpoint(
            self.cfg, self.data, self.model, self.optimizer, self.stopper, state, self.ctx.scaler
        )
        save_checkpoint(payload, self.run_dir / "last.pt")
        if improved:
            save_checkpoint(payload, self.run_dir / "best.pt")


def setup_run(
    cfg: Config,
    run_dir: Path,
    dist: Distributed,
    precision: str | None = None,
    nchw_stages: list[str] | None = None,
) -> Run:
    """Device, data shard, model, optimiser, schedule and early stopping for ``cfg``;
    ``precision`` and ``nchw_stages`` are a resumed run's, else they are chosen by timing
    (``training/precision.py``, ``training/layout.py``)."""
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    if cfg.train.sync_batchnorm and dist.enabled and device.type != "cuda":
        raise ConfigError("train.sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm)")
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank
    data = create_data(
        cfg.data, cfg.train.seed, device, cfg.train.channels_last, dist.rank, dist.world_size
    )
    args = model_args(cfg.model, len(data.class_names))
    side = cfg.data.image_size or data.train.image_side
    if precision is None:
        precision = pick_precision(cfg, device, dist, args, side)
    model = create_model(**args).to(device)
    if not cfg.train.channels_last or device.type != "cpu":
        nchw_stages = []  # the per-stage choice is a CPU one; a resumed run may move to a GPU
    elif nchw_stages is None:
        nchw_stages = pick_nchw_stages(cfg, dist, model, side, precision)
    if cfg.train.channels_last:
        model = apply_layout(model, nchw_stages)
    train_module = model
    if dist.enabled:
        if cfg.train.sync_batchnorm:
            model = train_module = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [dist.local_rank] if device.type == "cuda" else None
        train_module = DistributedDataParallel(model, device_ids=device_ids)
    lr = cfg.optim.lr * (dist.world_size if cfg.optim.scale_lr else 1)
    optimizer = build_optimizer(model, replace(cfg.optim, lr=lr))
    ctx = StepContext(
        model=torch.compile(train_module) if cfg.train.compile else train_module,
        optimizer=optimizer,
        criterion=nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing),
        schedule=LrSchedule(cfg.schedule, lr, cfg.train.epochs, len(data.train)),
        autocast=autocast_factory(precision, device),
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
        skip_nonfinite=cfg.train.nonfinite_loss == "skip",
        all_finite=lambda finite: not dist.any(not finite),
    )
    stopper = EarlyStopping(**vars(cfg.early_stopping))
    return Run(
        cfg, run_dir, dist, device, precision, nchw_stages, data, model, optimizer, stopper, ctx
    )


def pick_precision(
    cfg: Config, device: torch.device, dist: Distributed, args: dict[str, Any], side: int
) -> str:
    """The configured precision; for ``auto`` on a bf16 CPU, rank 0 times bf16 against fp32
    and every rank takes its answer."""
    if not wants_probe(cfg.train.precision, device):
        return resolve_precision(cfg.train.precision, device)
    bf16 = False
    if dist.is_main:
        timer = time_training_step(
            lambda: create_model(**args), side, cfg.data.batch_size, cfg.train.channels_last
        )
        bf16 = faster_precision(timer) == "bf16"
    return "bf16" if dist.broadcast_from_main(bf16) else "fp32"


def pick_nchw_stages(
    cfg: Config, dist: Distributed, model: nn.Module, side: int, precision: str
) -> list[str]:
    """With ``train.layout_probe`` (called on CPU), the stages rank 0 times faster in NCHW;
    every rank takes its answer (parameter layouts must agree for gradient all-reduce)."""
    if not cfg.train.layout_probe:
        return []
    chosen: list[str] = []
    if dist.is_main:
        chosen = probe_nchw_stages(model, side, cfg.data.batch_size, precision)
    return [name for name in STAGES if dist.broadcast_from_main(name in chosen)]
