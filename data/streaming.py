"""Image folders too large to hold decoded in memory: file lists, size estimates, sampled stats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from data.datasets import decode_image_file, list_image_folder, resize_square, stored_side
from utils.errors import DataError


@dataclass
class FileSet:
    files: list[Path]
    labels: Tensor  # (N,) int64
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: Tensor) -> FileSet:
        return FileSet(
            [self.files[i] for i in indices.tolist()], self.labels[indices], self.class_names
        )


def folder_file_set(folder: Path) -> FileSet:
    files, labels, class_names = list_image_folder(folder)
    return FileSet(files, torch.tensor(labels), class_names)


def first_image_size(files: list[Path], skip_bad: bool = False) -> tuple[int, int]:
    """(width, height) of the first image, read from its header only; with ``skip_bad``, of the
    first readable one."""
    for path in files:
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, ValueError) as err:
            if not skip_bad:
                raise DataError(f"cannot read image {path}: {err}") from None
    raise DataError(f"none of the {len(files)} images is readable")


def decoded_bytes(files: list[Path], image_size: int | None, skip_bad: bool = False) -> int:
    """Memory the decoded uint8 set would take, judged from the first image."""
    width, height = stored_side(*first_image_size(files, skip_bad), image_size)
    return len(files) * 3 * width * height


def sample_images(
    file_set: FileSet, size: int, skip_bad: bool, count: int = 2000, seed: int = 0
) -> Tensor:
    """A seeded random sample of up to ``count`` decoded images, for normalisation statistics;
    unreadable files raise, or with ``skip_bad`` are passed over."""
    order = torch.randperm(len(file_set), generator=torch.Generator().manual_seed(seed))
    images = []
    for i in order.tolist():
        try:
            images.append(resize_square(decode_image_file(file_set.files[i]), size))
        except DataError:
            if not skip_bad:
                raise
        if len(images) == count:
            break
    if not images:
        raise DataError(f"no readable images among {len(file_set)} files")
    return torch.stack(images)
