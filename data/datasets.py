"""Data sets decoded into memory as uint8 tensors: CIFAR, ImageFolder trees, synthetic.

Every source gives an ``ImageSet``: images (N, 3, H, W) uint8, labels (N,) int64, class names.
CIFAR-sized data fit in RAM many times over, and holding them decoded removes JPEG decoding and
PIL transforms from every epoch; augmentation then runs on whole batches (``data/augment.py``).
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from data.image_files import IMAGE_EXTENSIONS, images_under
from data.image_modes import to_rgb8
from utils.errors import DataError
from utils.safe_write import WriteError, atomic_write

CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}
# What a missing, damaged, truncated, oversized or colourless (``to_rgb8``) file raises as it
# opens or decodes; a dangling symbolic link or a loop of them is an OSError too.
DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # when warnings are errors
    DataError,
)


@dataclass
class ImageSet:
    images: Tensor  # (N, 3, H, W) uint8
    labels: Tensor  # (N,) int64
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def synthetic_image_set(
    num_samples: int, num_classes: int, size: int = 32, seed: int = 0
) -> ImageSet:
    """A small learnable set: each class is a smooth random colour pattern, each image adds noise.

    The patterns are 4x4 grids upsampled to ``size``, so a flip or a few pixels of shift keep
    them recognisable, while the noise keeps the task from being solved by one pixel.
    """
    # The class patterns are fixed; ``seed`` draws the samples, so seeds give disjoint splits.
    prototypes = 0.5 + 0.12 * torch.randn(
        num_classes, 3, 4, 4, generator=torch.Generator().manual_seed(12345)
    )
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.nn.functional.interpolate(prototypes, size=size, mode="bilinear")
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=gen)]
    noise = 0.3 * torch.randn(num_samples, 3, size, size, generator=gen)
    images = (prototypes[labels] + noise).clamp(0, 1).mul(255).round().to(torch.uint8)
    names = [f"class_{i}" for i in range(num_classes)]
    return ImageSet(images, labels, names)


def synthetic_peak_bytes(num_samples: int, size: int = 32) -> int:
    """Memory ``synthetic_image_set`` takes at its peak: three float32 images per sample (the
    noise, the patterns, their sum) beside the uint8 result."""
    return num_samples * 3 * size * size * (3 * 4 + 1)


def cifar_image_set(name: str, root: Path, train: bool, download: bool) -> ImageSet:
    """CIFAR-10/100 through torchvision, downloaded into ``root`` when absent."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted"
        raise DataError(
            f"{name} not found in {root} ({err}); set data.download=true, or point "
            "--data-root at a local copy (torchvision's CIFAR files or an ImageFolder tree)"
        ) from None
    except OSError as err:  # URLError and socket errors when offline
        raise DataError(
            f"downloading {name} into {root} failed ({getattr(err, 'reason', err)}); "
            "offline? Point --data-root (or RESNET18_DATA_ROOT) at a local copy: "
            "torchvision's CIFAR files or an ImageFolder tree root/train/<class>/*.jpg"
        ) from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    return ImageSet(images, torch.tensor(ds.targets, dtype=torch.int64), list(ds.classes))


def list_image_folder(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files and labels of ``folder/<class>/...``; classes sorted by name.

    Hidden entries (names starting with ".", such as ``.ipynb_checkpoints``) are left out at
    every level; images in subfolders of a class folder belong to that class; a class folder
    without images is an error naming it (it would be a class nothing teaches)."""

    if not folder.is_dir():
        raise DataError(f"data folder {folder} does not exist")
    class_names = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")
    )
    if not class_names:
        raise DataError(f"{folder} has no class folders; expected {folder}/<class>/<image>")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        found = images_under(folder / name)
        if not found:
            raise DataError(
                f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add some or remove the folder"
            )
        files += found
        labels += [label] * len(found)
    return files, labels, class_names


@contextmanager
def open_image(path: Path) -> Iterator[Image.Image]:
    """``Image.open(path)``, the one way this repo opens an image file: every way the file can
    fail to be an image (missing, a dangling link or a loop of links, not an image, damaged,
    over PIL's pixel limit), on opening or while the block decodes it, is a DataError naming
    it, which ``data.skip_bad_images`` can then skip.

    PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` and only warns above it; here
    the limit itself holds, so an image of 1.5 times the limit does not take its memory."""
    try:
        with Image.open(path) as image:
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and image.width * image.height > limit:
                raise DataError(
                    f"{image.width}x{image.height} pixels exceed PIL's limit of {limit} "
                    "(PIL.Image.MAX_IMAGE_PIXELS)"
                )
            yield image
    except DECODE_ERRORS as err:
        raise DataError(f"cannot decode image {path}: {err}") from None


def image_tensor(image: Image.Image) -> Tensor:
    """(3, H, W) uint8 of a PIL image of any mode, scaled by its value range (``to_rgb8``)."""
    array = np.asarray(to_rgb8(image))  # (H, W, 3) uint8
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def decode_image_file(path: Path) -> Tensor:
    """(3, H, W) uint8; a file PIL cannot read, or one over its pixel limit, is a DataError."""
    with open_image(path) as pil:
        return image_tensor(pil)


def resize_square(image: Tensor, size: int) -> Tensor:
    """Resize the short side to ``size`` and centre-crop to ``size`` x ``size``."""
    if image.shape[1:] == (size, size):
        return image
    # imported here: torchvision takes seconds to import, and most commands never resize
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(TF.resize(image, size, antialias=True), [size, size])


def stored_side(width: int, height: int, image_size: int | None) -> tuple[int, int]:
    """The size an image is kept at in memory: its own, unless a side exceeds ``image_size``
    (then ``image_size`` square). Smaller images are enlarged later, batch by batch."""
    if image_size is not None and max(width, height) > image_size:
        return image_size, image_size
    return width, height


def _cache_key(folder: Path, files: list[Path], size: int | None, skip_bad: bool) -> str:
    digest = hashlib.sha1(f"{folder.resolve()}|{size}|{skip_bad}".encode())
    for path in files:  # class folder and name: renaming or moving a file changes the key
        try:
            stat = path.stat()
            signature = f"{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:  # a dangling link, a loop of links: decoding names it
            signature = "unreadable"
        digest.update(f"{path.relative_to(folder)}|{signature}".encode())
    return digest.hexdigest()[:16]


def _decode_all(files: list[Path], skip_bad: bool) -> list[Tensor | None]:
    """Decode in a thread pool; a bad file raises (naming it) or, with ``skip_bad``, is None."""

    def decode(path: Path) -> Tensor | None:
        try:
            return decode_image_file(path)
        except DataError as err:
            if not skip_bad:
                raise
            warnings.warn(f"skipping {err}", stacklevel=1)
            return None

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(decode, files, chunksize=256))


def folder_image_set(
    folder: Path, size: int | None, cache_dir: Path | None, skip_bad: bool = False
) -> ImageSet:
    """Decode an ImageFolder tree into memory, through a disk cache keyed by its files.

    Images keep their size when all share one no larger than ``size``; otherwise ``size``
    (required for mixed sizes) resizes them (short side, then centre crop), as streaming does.
    """
    files, labels, class_names = list_image_folder(folder)
    key = _cache_key(folder, files, size, skip_bad)
    cache = cache_dir / f"{folder.name}-{key}.pt" if cache_dir else None
    if cache is not None and (stored := _read_cache(cache)) is not None:
        return stored
    decoded = _decode_all(files, skip_bad)
    kept = [(img, label) for img, label in zip(decoded, labels, strict=True) if img is not None]
    if len(kept) < len(files):
        print(f"skipped {len(files) - len(kept)} unreadable images in {folder}", file=sys.stderr)
    if not kept:
        raise DataError(f"no readable images in {folder}")
    images = [img for img, _ in kept]
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1 and size is None:
        raise DataError(
            f"images in {folder} have different sizes; "
            "set data.image_size to resize them to one square size"
        )
    _, height, width = next(iter(shapes))
    if len(shapes) > 1 or stored_side(width, height, size) != (width, height):
        images = [resize_square(img, size) for img in images]
    image_set = ImageSet(
        torch.stack(images), torch.tensor([label for _, label in kept]), class_names
    )
    if cache is not None:
        _write_cache(image_set, cache)
    return image_set


def _read_cache(cache: Path) -> ImageSet | None:
    """The cached decoded set, or None when there is none or it cannot be read (then the
    images are decoded again and the cache rewritten)."""
    if not cache.is_file():
        return None
    try:
        stored = torch.load(cache, weights_only=True)
        return ImageSet(stored["images"], stored["labels"], stored["class_names"])
    except Exception as err:  # a damaged file can fail in many ways inside torch.load
        warnings.warn(f"ignoring unreadable cache {cache} ({type(err).__name__})", stacklevel=2)
        return None


def _write_cache(image_set: ImageSet, cache: Path) -> None:
    """Keep the decoded set for the next run. The cache is optional: one that cannot be
    written (a full disk, no permission) is a warning, and its temporary file never outlives
    the write, also when interrupted (``atomic_write``)."""
    payload = {k: getattr(image_set, k) for k in ("images", "labels", "class_names")}
    try:
        atomic_write(cache, lambda file: torch.save(payload, file))
    except WriteError as err:
        warnings.warn(f"{err}; going on without the decode cache", stacklevel=2)
