"""Data: sources, the train/val split, batched augmentation, in-memory or streaming loaders.

``create_data`` turns a ``DataConfig`` into everything training needs; ``create_eval_loader``
rebuilds one split for evaluation from what a checkpoint recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from data.augment import BatchTransform
from data.datasets import (
    ImageSet,
    cifar_image_set,
    folder_image_set,
    list_image_folder,
    synthetic_image_set,
)
from data.loader import InMemoryLoader, StreamingLoader
from data.split import check_same_data, data_fingerprint, split_indices
from data.streaming import (
    FileSet,
    decoded_bytes,
    first_image_size,
    folder_file_set,
    sample_images,
)
from utils.config import DataConfig
from utils.errors import DataError

DATA_ROOT_ENV = "RESNET18_DATA_ROOT"
Loader = InMemoryLoader | StreamingLoader
SYNTHETIC_TEST_SEED = 1


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


def is_image_folder(root: Path) -> bool:
    """True when ``root`` holds an ImageFolder tree (``root/train/<class>/...``)."""
    return (root / "train").is_dir()


def load_image_set(cfg: DataConfig, split: str) -> ImageSet | None:
    """The images of ``split`` ("train", "val" or "test"), or None if the source has none."""
    root = Path(cfg.root).expanduser()
    if cfg.dataset == "synthetic":
        if split == "val":
            return None
        seed = 0 if split == "train" else SYNTHETIC_TEST_SEED
        return synthetic_image_set(cfg.synthetic_samples, cfg.synthetic_classes, seed=seed)
    if cfg.dataset == "imagefolder" or is_image_folder(root):
        if (root / split).is_dir():
            return folder_image_set(
                root / split, cfg.image_size, Path(cfg.cache_dir), cfg.skip_bad_images
            )
        if split == "train":
            raise DataError(
                f"data root {root} has no train/ folder; expected {root}/train/<class>/<image>. "
                f"Set data.root, --data-root or {DATA_ROOT_ENV}"
            )
        return None
    if split == "val":
        return None
    return cifar_image_set(cfg.dataset, root, split == "train", cfg.download)


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


def validation_split(cfg: DataConfig, num_samples: int) -> tuple[Tensor, Tensor]:
    """Train and validation indices per ``cfg``, or a DataError when a side would be empty."""
    try:
        return split_indices(num_samples, cfg.val_fraction, cfg.split_seed)
    except ValueError as err:
        raise DataError(f"data.val_fraction: {err}; change it or add images") from None


def carve_validation(cfg: DataConfig, full: ImageSet) -> tuple[ImageSet, ImageSet, Tensor]:
    """Split ``full`` into train and validation with ``cfg.split_seed``."""
    train_idx, val_idx = validation_split(cfg, len(full))
    train = ImageSet(full.images[train_idx], full.labels[train_idx], full.class_names)
    val = ImageSet(full.images[val_idx], full.labels[val_idx], full.class_names)
    return train, val, val_idx


def make_transforms(
    cfg: DataConfig, mean: list[float], std: list[float], channels_last: bool
) -> tuple[BatchTransform, BatchTransform]:
    """The training transform (with the configured augmentation) and the evaluation one."""
    train = BatchTransform(
        mean,
        std,
        cfg.hflip,
        cfg.crop_padding,
        cfg.image_size,
        channels_last=channels_last,
        cutout=cfg.cutout,
        crop_padding_mode=cfg.crop_padding_mode,
    )
    evaluation = BatchTransform(mean, std, output_size=cfg.image_size, channels_last=channels_last)
    return train, evaluation


def folder_root(cfg: DataConfig) -> Path | None:
    """The root of an ImageFolder data set, or None for CIFAR files and synthetic data."""
    root = Path(cfg.root).expanduser()
    if cfg.dataset == "synthetic":
        return None
    return root if cfg.dataset == "imagefolder" or is_image_folder(root) else None


def use_streaming(cfg: DataConfig) -> bool:
    """``data.loader``: memory, stream, or auto (stream when decoding would exceed the limit)."""
    root = folder_root(cfg)
    if cfg.loader == "memory" or root is None:
        if cfg.loader == "stream":
            raise DataError("data.loader=stream needs an ImageFolder data set (root/train/...)")
        return False
    if cfg.loader == "stream":
        return True
    if not (root / "train").is_dir():
        return False  # loading reports the missing folder with the way out
    files, _, _ = list_image_folder(root / "train")
    return too_big_for_memory(cfg, files)


def too_big_for_memory(cfg: DataConfig, files: list[Path]) -> bool:
    """Whether ``files``, decoded at the size they would be kept at, exceed the memory limit."""
    return decoded_bytes(files, cfg.image_size, cfg.skip_bad_images) > cfg.memory_limit_gb * 2**30


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
    shard = {"device": device, "rank": rank, "world_size": world_size}
    if use_streaming(cfg):
        return create_streaming_data(cfg, seed, channels_last, shard)
    full = load_image_set(cfg, "train")
    assert full is not None
    val = load_image_set(cfg, "val")
    val_idx = None
    if val is None:
        train, val, val_idx = carve_validation(cfg, full)
    else:
        train = full
    check_sets(cfg, train.class_names, val.class_names, len(train))
    train_loader = InMemoryLoader(train.images, train.labels, cfg.batch_size, True, seed, **shard)
    val_loader = InMemoryLoader(val.images, val.labels, cfg.eval_batch_size, False, **shard)
    stats = channel_stats(train.images)
    split = (val_idx, full.labels)
    return bundle(cfg, train_loader, val_loader, train.class_names, stats, split, channels_last)


def bundle(
    cfg: DataConfig,
    train: Loader,
    val: Loader,
    class_names: list[str],
    stats: tuple[list[float], list[float]],
    split: tuple[Tensor | None, Tensor],
    channels_last: bool,
) -> DataBundle:
    """Loaders plus the transforms built from the training set's mean and std; ``split`` is
    the carved validation indices (if any) and the labels of the whole training set."""
    mean, std = stats
    val_indices, full_labels = split
    train_tf, eval_tf = make_transforms(cfg, mean, std, channels_last)
    return DataBundle(
        train, val, train_tf, eval_tf, class_names, mean, std, val_indices,
        data_fingerprint(full_labels),
    )  # fmt: skip


def check_sets(cfg: DataConfig, train_classes: list[str], val_classes: list[str], n: int) -> None:
    if n < 2:
        raise DataError(f"{cfg.root}: BatchNorm needs at least 2 training images, got {n}")
    if val_classes != train_classes:
        raise DataError(f"val/ classes {val_classes} differ from train/ {train_classes}")


def streaming_side(cfg: DataConfig, files: list[Path]) -> int:
    """The square side streamed images are resized to: ``image_size``, else the first image's."""
    return cfg.image_size or max(first_image_size(files, cfg.skip_bad_images))


def create_streaming_data(
    cfg: DataConfig, seed: int, channels_last: bool, shard: dict[str, Any]
) -> DataBundle:
    """Like ``create_data``, but images are decoded per batch by DataLoader workers."""
    root = folder_root(cfg)
    assert root is not None
    full = folder_file_set(root / "train")
    val_idx = None
    if (root / "val").is_dir():
        train, val = full, folder_file_set(root / "val")
    else:
        train_idx, val_idx = validation_split(cfg, len(full))
        train, val = full.subset(train_idx), full.subset(val_idx)
    check_sets(cfg, train.class_names, val.class_names, len(train))
    side = streaming_side(cfg, full.files)
    common = {"size": side, "num_workers": cfg.num_workers, "skip_bad": cfg.skip_bad_images}
    common.update(shard)
    train_loader = StreamingLoader(
        train.files, train.labels, batch_size=cfg.batch_size, shuffle=True, seed=seed, **common
    )
    val_loader = StreamingLoader(
        val.files, val.labels, batch_size=cfg.eval_batch_size, shuffle=False, **common
    )
    stats = channel_stats(sample_images(train, side, cfg.skip_bad_images))
    split = (val_idx, full.labels)
    return bundle(cfg, train_loader, val_loader, train.class_names, stats, split, channels_last)


def create_eval_loader(
    cfg: DataConfig,
    split: str,
    val_indices: Tensor | None,
    device: torch.device,
    image_folder: Path | None = None,
    fingerprint: str | None = None,
    trained_side: int | None = None,
) -> tuple[Loader, list[str]]:
    """A loader over ``split`` as training saw it ("val" uses the recorded indices), or over
    ``image_folder``; streamed when training streamed or the folder is too large. The
    training set must match ``fingerprint``, the checkpoint's (when it has one); streamed
    images are resized to ``trained_side``, the side the model was trained at, when known."""
    batch = cfg.eval_batch_size
    if image_folder is not None:
        files = folder_file_set(image_folder)
        too_big = too_big_for_memory(cfg, files.files)
        if cfg.loader == "stream" or (cfg.loader == "auto" and too_big):
            return streaming_eval_loader(cfg, files, device, trained_side), files.class_names
        images = folder_image_set(image_folder, cfg.image_size, None, cfg.skip_bad_images)
    elif use_streaming(cfg):
        root = folder_root(cfg)
        assert root is not None
        if split in ("val", "train") and val_indices is not None:
            full = folder_file_set(root / "train")
            check_recorded_split(val_indices, fingerprint, full.labels, cfg.root)
            files = full.subset(val_indices if split == "val" else outside(val_indices, len(full)))
        elif (root / split).is_dir():
            files = folder_file_set(root / split)
        else:
            raise DataError(f"the data set at {cfg.root} has no {split!r} split")
        return streaming_eval_loader(cfg, files, device, trained_side), files.class_names
    else:
        images = load_eval_split(cfg, split, val_indices, fingerprint)
    loader = InMemoryLoader(images.images, images.labels, batch, False, device=device)
    return loader, images.class_names


def streaming_eval_loader(
    cfg: DataConfig, files: FileSet, device: torch.device, trained_side: int | None
) -> Loader:
    """Without ``trained_side``, the side of the first image scored (as in training)."""
    return StreamingLoader(
        files.files,
        files.labels,
        trained_side or streaming_side(cfg, files.files),
        cfg.eval_batch_size,
        shuffle=False,
        device=device,
        num_workers=cfg.num_workers,
        skip_bad=cfg.skip_bad_images,
    )


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


def load_eval_split(
    cfg: DataConfig, split: str, val_indices: Tensor | None, fingerprint: str | None = None
) -> ImageSet:
    """The images of ``split`` as training saw them: "val" is the recorded indices, and
    "train" leaves them out."""
    if split in ("val", "train") and val_indices is not None:
        full = load_image_set(cfg, "train")
        assert full is not None
        check_recorded_split(val_indices, fingerprint, full.labels, cfg.root)
        keep = val_indices if split == "val" else outside(val_indices, len(full))
        return ImageSet(full.images[keep], full.labels[keep], full.class_names)
    image_set = load_image_set(cfg, split)
    if image_set is None:
        raise DataError(f"the data set at {cfg.root} has no {split!r} split")
    return image_set


def resolve_data_root(cli_root: str | None) -> str | None:
    """The data root given on the command line, else by the environment, else None."""
    return cli_root or os.environ.get(DATA_ROOT_ENV) or None
