"""Mini-batch loaders: one over a uint8 tensor in memory, one streaming files through workers.

Both serve epoch ``e`` in an order that is a pure function of ``(seed, e)``, so a resumed run
sees exactly the batches an uninterrupted one would, and ``start_batch`` skips those already
done. Both yield uint8 (N, 3, H, W) images and labels on the training device; augmentation and
normalisation happen there, on whole batches (``data/augment.py``).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from data.datasets import decode_image_file, resize_square
from utils.errors import DataError

Batch = tuple[Tensor, Tensor]


class EpochOrder:
    """Per-epoch sample order and batch count shared by the loaders.

    A trailing batch of one sample is dropped when shuffling: BatchNorm cannot train on it.
    Under data parallelism rank ``r`` of ``w`` takes positions ``r, r + w, ...`` of the epoch's
    order, so batch ``b`` of all ranks together is batch ``b`` of a single process with a
    ``w`` times larger batch. Training shards are cut to equal length so that every rank takes
    the same number of steps; evaluation shards keep every sample.
    """

    def __init__(
        self,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def shard_size(self) -> int:
        n = len(self.labels)
        if self.shuffle:
            return n // self.world_size
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        full, rest = divmod(self.shard_size(), self.batch_size)
        return full + (rest > (1 if self.shuffle else 0))

    def order(self, epoch: int) -> Tensor:
        """Sample indices of ``epoch`` in the order they are served."""
        if not self.shuffle:
            return torch.arange(len(self.labels))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(len(self.labels), generator=gen)

    def index_batches(
        self, epoch: int, start_batch: int, device: torch.device | None = None
    ) -> list[Tensor]:
        """This rank's batches of sample indices, from ``start_batch`` on; on ``device`` when
        given (moved there at once, one copy an epoch)."""
        order = self.order(epoch)[self.rank :: self.world_size][: self.shard_size()]
        order = order.to(device) if device is not None else order
        size = self.batch_size
        return [order[b * size : (b + 1) * size] for b in range(start_batch, len(self))]


class InMemoryLoader(EpochOrder):
    """Batches of a data set held in memory (on the training device) as one uint8 tensor."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(labels.to(device), batch_size, shuffle, seed, rank, world_size)
        self.images = images.to(device)  # (N, 3, H, W) uint8
        self.stored_side = images.shape[-1]  # the side images are kept at

    def batches(self, epoch: int = 0, start_batch: int = 0) -> Iterator[Batch]:
        for idx in self.index_batches(epoch, start_batch, self.labels.device):
            yield self.images[idx], self.labels[idx]

    def images_at(self, indices: Tensor) -> Tensor:
        return self.images[indices.to(self.images.device)].cpu()


class _FileDataset(Dataset):
    """Decodes one file per item; a bad file becomes None so the main process decides."""

    def __init__(self, files: list[Path], size: int) -> None:
        self.files = files
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None]:
        try:
            return index, resize_square(decode_image_file(self.files[index]), self.size)
        except DataError:
            return index, None


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the workers too; only the main process should act on it (save, exit).

    SIGTERM keeps torch's own worker handler: the main process stops its workers with
    SIGTERM when it exits, and a worker that ignored it would keep that exit waiting."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _collate(items: list[tuple[int, Tensor | None]]) -> tuple[Tensor, Tensor | None, list[int]]:
    good = [(i, image) for i, image in items if image is not None]
    bad = [i for i, image in items if image is None]
    images = torch.stack([image for _, image in good]) if good else None
    return torch.tensor([i for i, _ in good], dtype=torch.long), images, bad


class StreamingLoader(EpochOrder):
    """Batches decoded from files by DataLoader workers, for sets too large for memory.

    Images are resized to ``size`` x ``size`` (short side, then centre crop) in the workers.
    A file that cannot be decoded stops the run naming it, or is skipped with a warning when
    ``skip_bad`` is set; either way the worker itself never raises.
    """

    def __init__(
        self,
        files: list[Path],
        labels: Tensor,
        size: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        device: torch.device | str = "cpu",
        num_workers: int = 2,
        skip_bad: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(labels, batch_size, shuffle, seed, rank, world_size)
        self.files = files
        self.dataset = _FileDataset(files, size)
        self.stored_side = size
        self.device = torch.device(device)
        self.num_workers = num_workers
        self.skip_bad = skip_bad

    def batches(self, epoch: int = 0, start_batch: int = 0) -> Iterator[Batch]:
        loader = DataLoader(
            self.dataset,
            batch_sampler=[idx.tolist() for idx in self.index_batches(epoch, start_batch)],
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_ignore_interrupts,
        )
        for indices, images, bad in loader:
            self._handle_bad(bad)
            if images is None:  # skipping it would desynchronise steps across ranks and resumes
                raise DataError(f"every image of a batch is unreadable, e.g. {self.files[bad[0]]}")
            labels = self.labels[indices]
            if self.device.type == "cuda":  # a copy from pageable memory waits for the GPU
                labels = labels.pin_memory()
            on_device = labels.to(self.device, non_blocking=True)
            yield images.to(self.device, non_blocking=True), on_device

    def _handle_bad(self, bad: list[int]) -> None:
        if not bad:
            return
        if not self.skip_bad:
            raise DataError(
                f"cannot decode image {self.files[bad[0]]}; fix or remove it, or set "
                "data.skip_bad_images=true"
            )
        names = ", ".join(str(self.files[i]) for i in bad)
        print(f"warning: skipped {len(bad)} unreadable images: {names}", file=sys.stderr)

    def images_at(self, indices: Tensor) -> Tensor:
        """The decoded images at ``indices``, (K, 3, size, size) uint8, for plots."""
        side = self.dataset.size
        images = [self.dataset[int(i)][1] for i in indices]
        return torch.stack(images) if images else torch.empty(0, 3, side, side, dtype=torch.uint8)
