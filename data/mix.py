"""MixUp and CutMix on a batch: one mixing weight per batch, drawn from the run's generator.

MixUp (Zhang et al., 2018) blends each image with another of the batch; CutMix (Yun et al.,
2019) pastes a box of another image in. Either way the loss is ``lam * loss(labels) +
(1 - lam) * loss(labels[perm])``. All randomness comes from the epoch's ``torch.Generator``,
so a resumed run mixes exactly as an uninterrupted one would. The weight and the box are
needed on the host, so on a GPU a mixed batch waits once for the device to draw them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class Mixed:
    inputs: Tensor  # (N, C, H, W)
    labels: Tensor  # (N,) the images' own labels
    other_labels: Tensor  # (N,) the labels of the images mixed in
    lam: float  # the weight of ``labels`` in the loss


def beta_sample(alpha: float, gen: torch.Generator) -> float:
    """One draw from Beta(alpha, alpha), seeded from ``gen`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def cutmix_box(height: int, width: int, lam: float, gen: torch.Generator) -> tuple[int, ...]:
    """(top, bottom, left, right) of a box covering about ``1 - lam`` of the image, centred
    on a uniformly drawn pixel and clipped at the borders."""
    cut = math.sqrt(1 - lam)
    box_h, box_w = round(height * cut), round(width * cut)
    cy = int(torch.randint(0, height, (1,), generator=gen, device=gen.device))
    cx = int(torch.randint(0, width, (1,), generator=gen, device=gen.device))
    top, left = max(cy - box_h // 2, 0), max(cx - box_w // 2, 0)
    return top, min(cy + box_h - box_h // 2, height), left, min(cx + box_w - box_w // 2, width)


class BatchMixer:
    """Mixes batches with MixUp (``mixup_alpha``) and/or CutMix (``cutmix_alpha``); with
    both, each batch takes one of them with probability 1/2."""

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0) -> None:
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, inputs: Tensor, labels: Tensor, gen: torch.Generator) -> Mixed:
        use_cutmix = self.cutmix_alpha > 0
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(torch.rand(1, generator=gen, device=gen.device) < 0.5)
        perm = torch.randperm(len(labels), generator=gen, device=inputs.device)
        lam = beta_sample(self.cutmix_alpha if use_cutmix else self.mixup_alpha, gen)
        if use_cutmix:
            top, bottom, left, right = cutmix_box(*inputs.shape[-2:], lam, gen)
            inputs = inputs.clone()
            inputs[..., top:bottom, left:right] = inputs[perm, :, top:bottom, left:right]
            lam = 1 - (bottom - top) * (right - left) / (inputs.shape[-2] * inputs.shape[-1])
        else:
            inputs = lam * inputs + (1 - lam) * inputs[perm]
        return Mixed(inputs, labels, labels[perm], lam)
