"""Mini-batches drawn from a data set held in memory as one uint8 tensor."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor


class InMemoryLoader:
    """Iterate (images, labels) batches of an in-memory set, shuffled per epoch when asked.

    The order of epoch ``e`` is a pure function of ``(seed, e)``, so a resumed run sees exactly
    the batches an uninterrupted one would, and ``start_batch`` can skip those already done.
    A trailing batch of one sample is dropped when shuffling, since BatchNorm cannot train on it.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.images = images.to(device)  # (N, 3, H, W) uint8
        self.labels = labels.to(device)  # (N,)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed

    def __len__(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (rest > (1 if self.shuffle else 0))

    def order(self, epoch: int) -> Tensor:
        """Sample indices of ``epoch`` in the order they are served."""
        if not self.shuffle:
            return torch.arange(len(self.labels))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.labels), generator=gen)

    def batches(self, epoch: int = 0, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.order(epoch).to(self.labels.device)
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.images[idx], self.labels[idx]
