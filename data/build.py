"""From a ``DataConfig`` to loaders: the training bundle, and one split again for evaluation.

One function decides which images are validation (``split_sets``), one builds a loader over
decoded images or over files (``make_loader``); both serve the in-memory and the streaming
path. The input side, the side of the images the model sees, is settled here once
(``DataBundle.input_side``): ``data.image_size``, else the side the images are kept at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from data.augment import BatchTransform
from data.datasets import ImageSet, folder_image_set
from data.loader import InMemoryLoader, StreamingLoader
from data.sources import Images, read_split, too_big_for_memory, use_streaming
from data.split import check_same_data, data_fingerprint, split_indices
from data.streaming import (
    FileSet,
    first_image_size,
    folder_file_set,
    readable,
    sample_images,
)
from utils.config import DataConfig
from utils.errors import DataError

Loader = InMemoryLoader | StreamingLoader
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # what ImageNet-pretrained weights were trained with
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class DataBundle:
    train: Loader
    val: Loader
    train_transform: BatchTransform
    eval_transform: BatchTransform
    class_names: list[str]
    mean: list[float]
    std: list[float]
    val_indices: Tensor | None  # indices into the training set when validation was carved
    fingerprint: str  # of the whole training set (data/split.py), checked on resume and eval
    input_side: int  # the side of the square images the model sees


@dataclass
class Shard:
    """Where batches go: the device, and this process's share under data parallelism."""

    device: torch.device
    rank: int = 0
    world_size: int = 1


def create_data(
    cfg: DataConfig,
    seed: int,
    device: torch.device,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> DataBundle:
    """Load, split and wrap the data set described by ``cfg`` for training on ``device``;
    under data parallelism the loaders serve rank ``rank``'s shard."""
    stream = use_streaming(cfg)
    full, train, val, val_indices = split_sets(cfg, stream)
    if isinstance(train, FileSet) and isinstance(val, FileSet):
        train, val, val_indices = without_unreadable(cfg, train, val, val_indices)
    if len(train) < 2:
        raise DataError(f"{cfg.root}: BatchNorm needs at least 2 training images, got {len(train)}")
    if val.class_names != train.class_names:
        raise DataError(f"val/ classes {val.class_names} differ from train/ {train.class_names}")
    side = stream_side(cfg, full) if stream else None
    shard = Shard(device, rank, world_size)
    train_loader = make_loader(cfg, train, cfg.batch_size, shard, side, shuffle=True, seed=seed)
    val_loader = make_loader(cfg, val, cfg.eval_batch_size, shard, side)
    if isinstance(train, FileSet):
        mean, std = channel_stats(sample_images(train, side, cfg.skip_bad_images))
    else:
        mean, std = channel_stats(train.images)
    if cfg.normalization == "imagenet":  # "auto" is settled before (training/finetune.py)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    input_side = cfg.image_size or train_loader.stored_side
    train_tf, eval_tf = make_transforms(cfg, mean, std, input_side, channels_last)
    return DataBundle(
        train=train_loader,
        val=val_loader,
        train_transform=train_tf,
        eval_transform=eval_tf,
        class_names=train.class_names,
        mean=mean,
        std=std,
        val_indices=val_indices,
        fingerprint=data_fingerprint(full.labels),
        input_side=input_side,
    )


def without_unreadable(
    cfg: DataConfig, train: FileSet, val: FileSet, val_indices: Tensor | None
) -> tuple[FileSet, FileSet, Tensor | None]:
    """Streamed sets, checked before training (``readable``): every training file must open
    and every validation file decode, else the run stops here naming one (not at the end of
    its first epoch), or with ``data.skip_bad_images`` they are left out with a count. The
    whole set is left as it is, so its fingerprint does not depend on the check."""
    train = train.subset(readable(train, cfg.skip_bad_images, decode=False))
    keep = readable(val, cfg.skip_bad_images, decode=True)
    return train, val.subset(keep), None if val_indices is None else val_indices[keep]


def create_eval_loader(
    cfg: DataConfig,
    split: str,
    val_indices: Tensor | None,
    device: torch.device,
    image_folder: Path | None = None,
    fingerprint: str | None = None,
    input_side: int | None = None,
) -> tuple[Loader, list[str]]:
    """A loader over ``split`` as training saw it ("val" uses the recorded indices, "train"
    leaves them out), or over ``image_folder``; streamed when training streamed or the folder
    is too large. The training set must match ``fingerprint``, the checkpoint's (when it has
    one); streamed images are resized to ``input_side``, the model's, when known."""
    if image_folder is not None:
        files = folder_file_set(image_folder)
        too_big = too_big_for_memory(cfg, files.files)
        stream = cfg.loader == "stream" or (cfg.loader == "auto" and too_big)
        images: Images = files
        if not stream:
            images = folder_image_set(image_folder, cfg.image_size, None, cfg.skip_bad_images)
    else:
        stream = use_streaming(cfg)
        images = recorded_split(cfg, split, val_indices, fingerprint, stream)
    side = (input_side or stream_side(cfg, images)) if stream else None
    loader = make_loader(cfg, images, cfg.eval_batch_size, Shard(device), side)
    return loader, images.class_names


def make_transforms(
    cfg: DataConfig, mean: list[float], std: list[float], input_side: int, channels_last: bool
) -> tuple[BatchTransform, BatchTransform]:
    """The training transform (with the configured augmentation) and the evaluation one."""
    train = BatchTransform(
        mean,
        std,
        hflip=cfg.hflip,
        crop_padding=cfg.crop_padding,
        input_side=input_side,
        channels_last=channels_last,
        cutout=cfg.cutout,
        crop_padding_mode=cfg.crop_padding_mode,
    )
    evaluation = BatchTransform(mean, std, input_side=input_side, channels_last=channels_last)
    return train, evaluation


def split_sets(cfg: DataConfig, stream: bool) -> tuple[Images, Images, Images, Tensor | None]:
    """(whole training set, train, val, carved validation indices or None): the source's own
    val split where it has one, else ``data.val_fraction`` carved with ``data.split_seed``."""
    full = read_split(cfg, "train", stream)
    assert full is not None
    val = read_split(cfg, "val", stream)
    if val is not None:
        return full, full, val, None
    try:
        train_idx, val_idx = split_indices(len(full), cfg.val_fraction, cfg.split_seed)
    except ValueError as err:
        raise DataError(f"data.val_fraction: {err}; change it or add images") from None
    return full, full.subset(train_idx), full.subset(val_idx), val_idx


def recorded_split(
    cfg: DataConfig,
    split: str,
    val_indices: Tensor | None,
    fingerprint: str | None,
    stream: bool,
) -> Images:
    """``split`` as a checkpoint recorded it: "val" is the recorded indices into the
    training set, "train" the rest; any other split is the source's own."""
    if split in ("val", "train") and val_indices is not None:
        full = read_split(cfg, "train", stream)
        assert full is not None
        check_recorded_split(val_indices, fingerprint, full.labels, cfg.root)
        return full.subset(val_indices if split == "val" else outside(val_indices, len(full)))
    images = read_split(cfg, split, stream)
    if images is None:
        raise DataError(f"the data set at {cfg.root} has no {split!r} split")
    return images


def make_loader(
    cfg: DataConfig,
    images: Images,
    batch_size: int,
    shard: Shard,
    side: int | None,
    shuffle: bool = False,
    seed: int = 0,
) -> Loader:
    """The loader over ``images``: in memory for decoded images, streamed (resized to
    ``side`` by the workers) for files."""
    where = {"device": shard.device, "rank": shard.rank, "world_size": shard.world_size}
    if isinstance(images, ImageSet):
        return InMemoryLoader(
            images.images, images.labels, batch_size=batch_size, shuffle=shuffle, seed=seed, **where
        )
    assert side is not None
    return StreamingLoader(
        images.files,
        images.labels,
        size=side,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        num_workers=cfg.num_workers,
        skip_bad=cfg.skip_bad_images,
        **where,
    )


def stream_side(cfg: DataConfig, images: Images) -> int:
    """The square side streamed images are resized to: ``image_size``, else the first image's."""
    assert isinstance(images, FileSet)
    return cfg.image_size or max(first_image_size(images.files, cfg.skip_bad_images))


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N, 3, H, W), on the 0..1 scale."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255
        total += x.sum((0, 2, 3))
        total_sq += x.square().sum((0, 2, 3))
    count = images.numel() / 3
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]


def check_recorded_split(
    val_indices: Tensor, fingerprint: str | None, labels: Tensor, root: str
) -> None:
    """The training set must be the one whose images ``val_indices`` name: the same
    fingerprint, or for checkpoints without one, at least enough images."""
    check_same_data(fingerprint, data_fingerprint(labels), root)
    if int(val_indices.max()) >= len(labels):
        raise DataError(
            f"the checkpoint's validation split indexes {int(val_indices.max()) + 1}+ "
            f"images but {root} has {len(labels)}; is this the same data set?"
        )


def outside(indices: Tensor, count: int) -> Tensor:
    """The indices in ``range(count)`` that ``indices`` does not hold, in order."""
    keep = torch.ones(count, dtype=torch.bool)
    keep[indices] = False
    return keep.nonzero().flatten()
