"""Batched augmentation and normalisation of uint8 image batches, on the training device.

``BatchTransform`` does per sample what torchvision's ``RandomCrop(size, padding)`` and
``RandomHorizontalFlip()`` do, but for a whole batch at once in a few tensor operations, then
converts to float, normalises, optionally blanks a square per image (cutout) and resizes.
Randomness comes from an explicit ``torch.Generator`` so that runs and resumes are
reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F


def random_crop(images: Tensor, padding: int, gen: torch.Generator, mode: str = "zeros") -> Tensor:
    """Pad by ``padding`` and crop back to the input size at a uniform random offset.

    images: (N, C, H, W). Offsets are drawn independently per sample from 0..2*padding.
    ``mode`` "zeros" pads with black (torchvision's ``RandomCrop(padding=p)``), "reflect" mirrors
    the border (``padding_mode="reflect"``), so a shifted image has no black band.
    """
    n, c, h, w = images.shape
    pad = (padding, padding, padding, padding)
    padded = F.pad(images, pad, mode="reflect") if mode == "reflect" else F.pad(images, pad)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=gen, device=images.device)
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (N, W)
    padded = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * padding))
    return padded.gather(3, cols[:, None, None, :].expand(n, c, h, w))  # (N, C, H, W)


def random_hflip(images: Tensor, gen: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 0.5."""
    flip = torch.rand(images.shape[0], generator=gen, device=images.device).lt(0.5)
    return torch.where(flip[:, None, None, None], images.flip(3), images)


def random_cutout(images: Tensor, size: int, gen: torch.Generator) -> Tensor:
    """Zero a ``size`` x ``size`` square in each image (DeVries & Taylor, 2017, "Cutout").

    images: (N, C, H, W) float, normalised, so zero is the data set's mean colour. Each square
    is centred on a uniformly drawn pixel and clipped at the borders, so it can be partly outside.
    """
    n, _, h, w = images.shape
    device = images.device
    centres = torch.stack(
        [
            torch.randint(0, h, (n,), generator=gen, device=device),
            torch.randint(0, w, (n,), generator=gen, device=device),
        ]
    )
    start = centres - size // 2  # (2, N): first row, first column
    rows = torch.arange(h, device=images.device) - start[0, :, None]  # (N, H)
    cols = torch.arange(w, device=images.device) - start[1, :, None]  # (N, W)
    in_rows = (rows >= 0) & (rows < size)
    in_cols = (cols >= 0) & (cols < size)
    return images.masked_fill(in_rows[:, None, :, None] & in_cols[:, None, None, :], 0.0)


class BatchTransform:
    """uint8 (N, 3, H, W) -> normalised float (N, 3, S, S), with optional augmentation."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        hflip: bool = False,
        crop_padding: int = 0,
        input_side: int | None = None,  # the model's; other sizes are resized to it
        channels_last: bool = False,
        cutout: int = 0,
        crop_padding_mode: str = "zeros",
    ) -> None:
        self.hflip = hflip
        self.crop_padding = crop_padding
        self.crop_padding_mode = crop_padding_mode
        self.cutout = cutout
        self.input_side = input_side
        self.channels_last = channels_last
        # x / 255 normalised is x * scale + shift, computed in one fused multiply-add.
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t

    @property
    def augments(self) -> bool:
        return self.hflip or self.crop_padding > 0 or self.cutout > 0

    def __call__(
        self, images: Tensor, gen: torch.Generator | None = None, side: int | None = None
    ) -> Tensor:
        """``side`` replaces ``input_side`` for this batch (progressive resizing)."""
        side = side or self.input_side
        if self.augments:
            if gen is None:
                raise ValueError("an augmenting transform needs a torch.Generator")
            if self.crop_padding:
                images = random_crop(images, self.crop_padding, gen, self.crop_padding_mode)
            if self.hflip:
                images = random_hflip(images, gen)
        if self.scale.device != images.device:  # moved once, not copied every batch
            self.scale, self.shift = self.scale.to(images.device), self.shift.to(images.device)
        out = torch.addcmul(self.shift, images.float(), self.scale)
        if self.cutout:
            out = random_cutout(out, self.cutout, gen)
        if side is not None and out.shape[-1] != side:
            out = F.interpolate(out, size=side, mode="bilinear", antialias=True)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out
