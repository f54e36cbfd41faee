"""Where a data set's images come from: CIFAR files, an image folder or the synthetic set, and
whether they are decoded into memory or streamed from disk.

``read_split`` returns one split's images (decoded, or as files when streaming) or None when the
source has no such split; ``use_streaming`` makes the memory decision of ``data.loader``.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.datasets import (
    ImageSet,
    cifar_image_set,
    folder_image_set,
    list_image_folder,
    synthetic_image_set,
    synthetic_peak_bytes,
)
from data.streaming import FileSet, decoded_bytes, folder_file_set
from utils.config import DataConfig
from utils.errors import DataError

DATA_ROOT_ENV = "RESNET18_DATA_ROOT"
SYNTHETIC_TEST_SEED = 1
Images = ImageSet | FileSet  # decoded images, or files decoded batch by batch


def read_split(cfg: DataConfig, split: str, stream: bool) -> Images | None:
    """The images of ``split`` ("train", "val" or "test"), as files when ``stream``, or None
    if the source has no such split."""
    root = folder_root(cfg)
    if root is not None and (root / split).is_dir():
        if stream:
            return folder_file_set(root / split)
        return folder_image_set(
            root / split, cfg.image_size, Path(cfg.cache_dir), cfg.skip_bad_images
        )
    if root is not None:
        if split == "train":
            raise DataError(
                f"data root {root} has no train/ folder; expected {root}/train/<class>/<image>. "
                f"Set data.root, --data-root or {DATA_ROOT_ENV}"
            )
        return None
    if split == "val":
        return None
    if cfg.dataset == "synthetic":
        seed = 0 if split == "train" else SYNTHETIC_TEST_SEED
        return synthetic_set(cfg, seed)
    path = Path(cfg.root).expanduser()
    return cifar_image_set(cfg.dataset, path, split == "train", cfg.download)


def synthetic_set(cfg: DataConfig, seed: int) -> ImageSet:
    """The synthetic set; one too large for this machine's memory is a DataError naming
    ``data.synthetic_samples``, checked before allocating (an allocation the system grants but
    cannot back ends in the out-of-memory killer, not in an error)."""
    need = synthetic_peak_bytes(cfg.synthetic_samples)
    too_big = DataError(
        f"data.synthetic_samples={cfg.synthetic_samples}: generating that many images needs "
        f"{need / 2**30:.1f} GiB, more than this machine can give; lower it"
    )
    if need > physical_memory_bytes():
        raise too_big
    try:
        return synthetic_image_set(cfg.synthetic_samples, cfg.synthetic_classes, seed=seed)
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "allocate" not in str(err):
            raise
        raise too_big from None


def physical_memory_bytes() -> int:
    """The machine's memory; huge where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def folder_root(cfg: DataConfig) -> Path | None:
    """The root of an ImageFolder data set (``root/train/<class>/...``, or any root with
    ``data.dataset: imagefolder``), or None for CIFAR files and synthetic data."""
    root = Path(cfg.root).expanduser()
    if cfg.dataset == "synthetic":
        return None
    return root if cfg.dataset == "imagefolder" or (root / "train").is_dir() else None


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


def resolve_data_root(cli_root: str | None) -> str | None:
    """The data root given on the command line, else by the environment, else None."""
    return cli_root or os.environ.get(DATA_ROOT_ENV) or None
