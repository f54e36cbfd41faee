"""Writing files so that a failure keeps the old file and says why in one line.

``atomic_write`` writes to a temporary file beside the target, fsyncs it and renames it over the
target. On any failure (a full disk, no permission, a read-only file system, Ctrl-C) the
temporary file is removed and the target is left as it was; a failed write is a ``WriteError``
naming the path and the cause (``No space left on device (ENOSPC)``).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from utils.errors import UserError

# Below this much free space a write that failed without saying why is taken for a full disk.
NEARLY_FULL_BYTES = 1 << 20


class WriteError(UserError):
    """A file that could not be written: a full disk, no permission, a read-only file system."""


def describe_os_error(err: OSError) -> str:
    """``No space left on device (ENOSPC)``: the system's words and the errno's name."""
    reason = err.strerror or str(err) or type(err).__name__
    name = errno.errorcode.get(err.errno or 0)
    return f"{reason} ({name})" if name else reason


def write_failure(err: BaseException, directory: Path) -> str | None:
    """Why a write into ``directory`` failed, or None if ``err`` is not a failed write.

    ``torch.save`` reports a failed write as a RuntimeError (``unexpected pos ...``) with the
    OSError behind it as its context; without one, a nearly full disk is taken as the cause."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return describe_os_error(seen)
        seen = seen.__cause__ or seen.__context__
    if free_bytes(directory) < NEARLY_FULL_BYTES:
        return describe_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    return None


def free_bytes(directory: Path) -> int:
    """Free space an unprivileged writer may use in ``directory``; huge when unknown."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 1 << 62


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash or a failure leaves the old file or the new one, never half of one, and no
    temporary file: it is removed on every way out, Ctrl-C included."""
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # mode 0o666 as open() uses, so the umask decides who may read the file
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        tmp = str(name)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as err:
        cause = write_failure(err, path.parent)
        if cause is None:
            raise
        raise WriteError(f"cannot write {path}: {cause}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """``atomic_write`` of UTF-8 text."""
    atomic_write(path, lambda file: file.write(text.encode()))


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` with ``atomic_write``'s guarantees."""
    with source.open("rb") as src:
        atomic_write(target, lambda file: shutil.copyfileobj(src, file))


@contextmanager
def naming_write_errors(path: Path) -> Iterator[None]:
    """An OSError inside (making a folder, opening a file) becomes a ``WriteError`` naming the
    file it was about, else ``path``."""
    try:
        yield
    except OSError as err:
        where = err.filename if err.filename is not None else path
        raise WriteError(f"cannot write {where}: {describe_os_error(err)}") from None
