"""Batched prediction in eval mode: the one inference path of validation and evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn
from tqdm import tqdm

from data.augment import BatchTransform

Batches = Iterable[tuple[Tensor, Tensor]]


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
    desc: str = "eval",
    progress: bool = True,
    flip_tta: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (float32 logits, labels) per batch, in eval mode, with no gradient tracking.

    ``flip_tta``: also classify each image mirrored left-right and average the two predicted
    distributions; the logits yielded are then the log of that average.
    """
    model.eval()
    disable = None if progress else True
    for images, labels in tqdm(batches, total=total, desc=desc, leave=False, disable=disable):
        with autocast():
            inputs = transform(images)
            logits = model(inputs).float()
            if flip_tta:
                mirrored = model(inputs.flip(3)).float()
        if flip_tta:
            log_probs = torch.stack([logits.log_softmax(1), mirrored.log_softmax(1)])
            logits = log_probs.logsumexp(0) - math.log(2)
        yield logits, labels
