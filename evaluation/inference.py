"""A checkpoint's model, and batched prediction in eval mode: the one inference path of
validation, evaluation and prediction."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm import tqdm

from data.augment import BatchTransform
from models import ResNet, apply_layout, create_model
from utils.checkpoint import load_state, scored_weights
from utils.device import FastPath

Batches = Iterable[tuple[Tensor, Tensor]]


def load_model(checkpoint: dict[str, Any], device: torch.device, fast_path: FastPath) -> ResNet:
    """The checkpoint's model on ``device``, in the memory layout it trained in."""
    model = create_model(**checkpoint["model_args"])
    load_state(model, checkpoint, "model", scored_weights(checkpoint))
    model = model.to(device).eval()
    if not fast_path.channels_last:
        return model
    return apply_layout(model, list(fast_path.nchw_stages))


def shifted(inputs: Tensor, dy: int, dx: int) -> Tensor:
    """``inputs`` moved by (dy, dx) pixels, with the border reflected into the gap."""
    pad = max(abs(dy), abs(dx))
    padded = F.pad(inputs, (pad, pad, pad, pad), mode="reflect")
    h, w = inputs.shape[-2:]
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def views(inputs: Tensor, tta: str) -> list[tuple[float, Tensor]]:
    """(weight, view) pairs of a batch for test-time augmentation: "flip" averages each image
    with its mirror; "flip-shift" gives those half the weight and shares the other half among
    one-pixel shifts down-right and up-left, each with its mirror."""
    if tta == "none":
        return [(1.0, inputs)]
    mirrored = [(0.5, inputs), (0.5, inputs.flip(3))]
    if tta == "flip":
        return mirrored
    moved = [shifted(inputs, 1, 1), shifted(inputs, -1, -1)]
    return [(w / 2, v) for w, v in mirrored] + [
        (0.125, view) for image in moved for view in (image, image.flip(3))
    ]


@torch.inference_mode()
def predict(
    model: nn.Module,
    batches: Batches,
    transform: BatchTransform,
    autocast: Callable[[], AbstractContextManager],
    total: int | None = None,
    desc: str = "eval",
    progress: bool = True,
    tta: str = "none",
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (float32 logits, labels) per batch, in eval mode, with no gradient tracking.

    ``tta`` (see ``views``): classify several views of each image and average the predicted
    distributions; the logits yielded are then the log of that weighted average.
    """
    model.eval()
    disable = None if progress else True
    for images, labels in tqdm(batches, total=total, desc=desc, leave=False, disable=disable):
        with autocast():
            inputs = transform(images)
            outputs = [(weight, model(view).float()) for weight, view in views(inputs, tta)]
        if len(outputs) == 1:
            logits = outputs[0][1]
        else:
            log_probs = torch.stack([out.log_softmax(1) + math.log(w) for w, out in outputs])
            logits = log_probs.logsumexp(0)
        yield logits, labels
