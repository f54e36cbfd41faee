"""A few training steps on the real CIFAR-10 JPEGs; skipped where they are absent."""

import contextlib
import itertools
from pathlib import Path

import torch

from data import create_data
from models import create_model
from training.loop import StepContext, epoch_generator, evaluate_loss_accuracy, train_one_epoch
from training.schedule import LrSchedule
from training.trainer import build_optimizer
from utils.config import load_config


def test_real_cifar10_trains_a_few_steps(real_data: Path, tmp_path: Path) -> None:
    cfg = load_config("optimized.yaml", [f"data.root={real_data}", "data.batch_size=64"])
    data = create_data(cfg.data, seed=0, device=torch.device("cpu"))
    assert len(data.train.labels) == 45_000 and len(data.val.labels) == 5_000
    assert data.class_names[:3] == ["airplane", "automobile", "bird"]
    assert data.mean == [round(v, 4) for v in data.mean]
    assert abs(data.mean[0] - 0.4913) < 0.002 and abs(data.std[2] - 0.2606) < 0.002

    torch.manual_seed(0)
    model = create_model(num_classes=10, stem="imagenet", dropout=0.5)
    optimizer = build_optimizer(model, cfg.optim, cfg.optim.lr)
    ctx = StepContext(
        model,
        optimizer,
        torch.nn.CrossEntropyLoss(),
        LrSchedule(cfg.schedule, 0.05, 1, 1000),
        autocast=contextlib.nullcontext,
    )
    val_batches = list(itertools.islice(data.val.batches(), 2))
    before = evaluate_loss_accuracy(model, val_batches, data.eval_transform, ctx.autocast)
    batches = itertools.islice(data.train.batches(0), 30)
    stats = train_one_epoch(ctx, batches, data.train_transform, epoch_generator(0, 0), 0, 30)
    after = evaluate_loss_accuracy(model, val_batches, data.eval_transform, ctx.autocast)
    assert stats.steps == 30 and torch.isfinite(torch.tensor(stats.loss))
    assert after.loss < before.loss, (before, after)
