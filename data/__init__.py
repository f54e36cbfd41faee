"""Data: sources decoded into memory, the train/val split, batched augmentation, loaders.

``create_data`` turns a ``DataConfig`` into everything training needs; ``load_eval_split``
rebuilds one split for evaluation from what a checkpoint recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from data.augment import BatchTransform
from data.datasets import (
    ImageSet,
    cifar_image_set,
    folder_image_set,
    synthetic_image_set,
)
from data.loader import InMemoryLoader
from data.split import split_indices
from utils.config import DataConfig
from utils.errors import DataError

DATA_ROOT_ENV = "RESNET18_DATA_ROOT"
SYNTHETIC_TEST_SEED = 1


@dataclass
class DataBundle:
    train: InMemoryLoader
    val: InMemoryLoader
    train_transform: BatchTransform
    eval_transform: BatchTransform
    class_names: list[str]
    mean: list[float]
    std: list[float]
    val_indices: Tensor | None  # indices into the training set when validation was carved


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


def carve_validation(cfg: DataConfig, full: ImageSet) -> tuple[ImageSet, ImageSet, Tensor]:
    """Split ``full`` into train and validation with ``cfg.split_seed``."""
    try:
        train_idx, val_idx = split_indices(len(full), cfg.val_fraction, cfg.split_seed)
    except ValueError as err:
        raise DataError(f"data.val_fraction: {err}; change it or add images") from None
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
    )
    evaluation = BatchTransform(mean, std, output_size=cfg.image_size, channels_last=channels_last)
    return train, evaluation


def create_data(
    cfg: DataConfig, seed: int, device: torch.device, channels_last: bool = False
) -> DataBundle:
    """Load, split and wrap the data set described by ``cfg`` for training on ``device``."""
    full = load_image_set(cfg, "train")
    assert full is not None
    val = load_image_set(cfg, "val")
    val_idx = None
    if val is None:
        train, val, val_idx = carve_validation(cfg, full)
    else:
        train = full
    if len(train) < 2:
        raise DataError(f"{cfg.root}: BatchNorm needs at least 2 training images, got {len(train)}")
    if val.class_names != train.class_names:
        raise DataError(f"val/ classes {val.class_names} differ from train/ {train.class_names}")
    mean, std = channel_stats(train.images)
    train_tf, eval_tf = make_transforms(cfg, mean, std, channels_last)
    return DataBundle(
        train=InMemoryLoader(train.images, train.labels, cfg.batch_size, True, seed, device),
        val=InMemoryLoader(val.images, val.labels, cfg.eval_batch_size, False, device=device),
        train_transform=train_tf,
        eval_transform=eval_tf,
        class_names=train.class_names,
        mean=mean,
        std=std,
        val_indices=val_idx,
    )


def load_eval_split(cfg: DataConfig, split: str, val_indices: Tensor | None) -> ImageSet:
    """The images of ``split`` as training saw them: "val" uses the recorded indices."""
    if split == "val" and val_indices is not None:
        full = load_image_set(cfg, "train")
        assert full is not None
        if int(val_indices.max()) >= len(full):
            raise DataError(
                f"the checkpoint's validation split indexes {int(val_indices.max()) + 1}+ "
                f"images but {cfg.root} has {len(full)}; is this the same data set?"
            )
        return ImageSet(full.images[val_indices], full.labels[val_indices], full.class_names)
    image_set = load_image_set(cfg, split)
    if image_set is None:
        raise DataError(f"the data set at {cfg.root} has no {split!r} split")
    return image_set


def resolve_data_root(cli_root: str | None) -> str | None:
    """The data root given on the command line, else by the environment, else None."""
    return cli_root or os.environ.get(DATA_ROOT_ENV) or None
