"""The image files a command line names: files as given, folders searched, glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from utils.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

GLOB_CHARACTERS = frozenset("*?[")


def find_images(names: Sequence[str]) -> list[Path]:
    """The files ``names`` stand for, in their order, each once.

    A file is taken as given (whatever its extension); a folder is searched recursively for
    files with an image extension, passing over hidden entries (names starting with "."); a
    glob pattern (``**`` spans folders) gives the image files and folders it matches. A name
    that matches nothing is a DataError: it is a typing mistake more often than not.
    """
    found: dict[Path, None] = {}
    for name in names:
        found.update(dict.fromkeys(expand(name)))
    return list(found)


def expand(name: str) -> list[Path]:
    path = Path(name)
    if path.is_file():
        return [path]
    if path.is_dir():
        if files := images_under(path):
            return files
        raise DataError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    if path.exists():  # neither a regular file nor a folder
        raise DataError(
            f"{name}: not a regular file (a FIFO, a socket or a device); expected an image "
            "file, a folder or a glob"
        )
    if GLOB_CHARACTERS.isdisjoint(name):
        raise DataError(f"{name} does not exist; expected an image file, a folder or a glob")
    files = []
    for match in map(Path, sorted(glob.glob(name, recursive=True))):
        if match.is_dir():
            files.extend(images_under(match))
        elif match.suffix.lower() in IMAGE_EXTENSIONS:
            files.append(match)
    if not files:
        raise DataError(f"the pattern {name!r} matches no image files")
    return files


def images_under(folder: Path) -> list[Path]:
    """The image files anywhere under ``folder``, sorted; hidden files and folders left out."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files.extend(
            Path(root, n)
            for n in names
            if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(files)
