"""Image folders too large to hold decoded in memory: file lists, size estimates, sampled stats."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from data.datasets import (
    decode_image_file,
    list_image_folder,
    open_image,
    resize_square,
    stored_side,
)
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
            return image_size(path)
        except DataError:
            if not skip_bad:
                raise
    raise DataError(f"none of the {len(files)} images is readable")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header: opening checks it is an image within PIL's
    pixel limit without decoding it."""
    with open_image(path) as image:
        return image.size


def readable(file_set: FileSet, skip_bad: bool, decode: bool) -> Tensor:
    """Positions in ``file_set`` of the files that open (with ``decode``: that decode), all
    checked at once, before training. A bad file is a DataError naming it, or with
    ``skip_bad`` is left out, with a count on stderr.

    Opening reads a header, cheap enough for every file; decoding finds truncated files too
    and is kept for validation files, decoded every epoch anyway."""
    check = decode_image_file if decode else image_size

    def failure(path: Path) -> DataError | None:
        try:
            check(path)
        except DataError as err:
            return err
        return None

    with ThreadPoolExecutor() as pool:  # mostly waiting on the disk
        failures = list(pool.map(failure, file_set.files, chunksize=64))
    bad = [err for err in failures if err is not None]
    if bad and not skip_bad:
        raise DataError(f"{bad[0]}; fix or remove it, or set data.skip_bad_images=true")
    if bad:
        print(f"skipping {len(bad)} unreadable images, e.g. {bad[0]}", file=sys.stderr)
    return torch.tensor([i for i, err in enumerate(failures) if err is None], dtype=torch.long)


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
