"""How often a training step waits for the device. On a GPU every read of a device tensor on
the host (``.item()``, ``.tolist()``, ``bool()``...) and every copy to the device from the host
stalls the queue of kernels. On the CPU they cost nothing, so these tests count the calls
themselves: what the CPU path calls is what the CUDA path calls."""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from data.augment import BatchTransform
from models import create_model
from training.loop import (
    EpochHooks,
    NonFiniteLossError,
    StepContext,
    epoch_generator,
    evaluate_loss_accuracy,
    restore_generator,
    train_one_epoch,
)
from training.optimizer import WeightAverage
from training.schedule import LrSchedule
from utils.config import ScheduleConfig

HOST_READS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy")


@contextlib.contextmanager
def device_traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter]:
    """Count host reads of tensors, and ``.to()`` calls that name a device, while active."""
    counts: Counter = Counter()
    with monkeypatch.context() as patch:
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(self: Tensor, *args, _original=original, _name=name, **kwargs):
                counts[_name] += 1
                return _original(self, *args, **kwargs)

            patch.setattr(torch.Tensor, name, counted)
        original_to = torch.Tensor.to

        def to(self: Tensor, *args, **kwargs):
            if "device" in kwargs or any(isinstance(a, (torch.device, str)) for a in args):
                counts["to(device)"] += 1
            return original_to(self, *args, **kwargs)

        patch.setattr(torch.Tensor, "to", to)
        yield counts


def batches(count: int, side: int = 16, size: int = 8) -> list[tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (count, size, 3, side, side), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 10, (count, size), generator=gen)
    return list(zip(images, labels, strict=True))


def step_context(sync_every: int, criterion: nn.Module | None = None) -> StepContext:
    torch.manual_seed(0)
    model = create_model(num_classes=10, stem="cifar")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return StepContext(
        model=model,
        optimizer=optimizer,
        criterion=criterion or nn.CrossEntropyLoss(label_smoothing=0.1),
        schedule=LrSchedule(ScheduleConfig(name="onecycle"), 0.01, 1, 100),
        autocast=contextlib.nullcontext,
        ema=WeightAverage(model, 0.9),
        sync_every=sync_every,
    )


AUGMENT = BatchTransform([0.5] * 3, [0.25] * 3, hflip=True, crop_padding=2, cutout=4)


@pytest.mark.parametrize(("sync_every", "reads"), [(5, 2), (1, 10), (4, 3)])
def test_training_reads_the_device_once_every_sync_every_steps(
    monkeypatch: pytest.MonkeyPatch, sync_every: int, reads: int
) -> None:
    """Augmentation drawn on the device, an EMA with its counter on the host, losses summed
    on the device: ten steps read it ``ceil(10 / sync_every)`` times and copy nothing to it."""
    ctx = step_context(sync_every)
    train_one_epoch(ctx, batches(2), AUGMENT, epoch_generator(0, 0), 0, 2)  # first EMA copy
    with device_traffic(monkeypatch) as counts:
        stats = train_one_epoch(ctx, batches(10), AUGMENT, epoch_generator(0, 1), 2, 10)
    assert dict(counts) == {"tolist": reads}
    assert stats.steps == stats.seen // 8 == 10 and math.isfinite(stats.loss)


def test_validation_reads_the_device_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = step_context(1).model
    plain = BatchTransform([0.5] * 3, [0.25] * 3)
    with device_traffic(monkeypatch) as counts:
        stats = evaluate_loss_accuracy(model, batches(4), plain, contextlib.nullcontext)
    assert dict(counts) == {"tolist": 1}
    assert stats.seen == 32 and 0 <= stats.correct <= 32


class NanOnCall(nn.Module):
    """Cross-entropy, except NaN on call number ``bad`` (counting from 0)."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        loss = nn.functional.cross_entropy(logits, labels)
        self.calls += 1
        return loss * math.nan if self.calls - 1 == self.bad else loss


def test_a_lazy_loss_check_names_the_step_that_went_bad_and_saves_nothing() -> None:
    ctx = step_context(4, NanOnCall(bad=2))
    saves: list[int] = []
    hooks = EpochHooks(save_due=lambda: True, save=lambda stats: saves.append(stats.steps))
    with pytest.raises(NonFiniteLossError, match="loss is nan at global step 12;"):
        train_one_epoch(ctx, batches(8), AUGMENT, epoch_generator(0, 0), 10, 8, hooks=hooks)
    assert saves == []  # the read at the fourth step raised before any save


def test_a_stop_is_answered_at_the_next_read() -> None:
    ctx = step_context(3)
    hooks = EpochHooks(stop_requested=lambda: True)
    stats = train_one_epoch(ctx, batches(8), AUGMENT, epoch_generator(0, 0), 0, 8, hooks=hooks)
    assert stats.steps == 3 and stats.seen == 24 and stats.interrupted


def test_the_weight_average_matches_torch_averaged_model_bitwise() -> None:
    ctx = step_context(1)
    reference = AveragedModel(ctx.model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for images, labels in batches(3):
        train_one_epoch(ctx, [(images, labels)], AUGMENT, epoch_generator(0, 0), 0, 1)
        reference.update_parameters(ctx.model)
    ours = ctx.ema.state_dict()
    assert ours.keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(ours[name], tensor), name
    assert int(ours["n_averaged"]) == ctx.ema.updates == 3


def test_a_generator_state_of_another_device_kind_is_refused() -> None:
    gen = epoch_generator(0, 3)
    before = gen.get_state()
    cuda_sized = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's (seed, offset)
    assert not restore_generator(gen, cuda_sized)
    assert torch.equal(gen.get_state(), before)
    other = epoch_generator(1, 3)
    assert restore_generator(other, before)
    assert torch.equal(other.get_state(), before)
