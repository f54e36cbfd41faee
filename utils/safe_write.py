"""Writing files so that a failure keeps the old file and says why in one line.

Every file the repo writes goes through ``atomic_path`` (``atomic_write``, ``write_text_atomic``
and ``copy_atomic`` are built on it): the new content goes to a temporary file beside the
target, which is fsynced and renamed over the target. On any failure (a full disk, no
permission, a read-only file system, Ctrl-C) the temporary file is removed and the target is
left as it was; a failed write is a ``WriteError`` naming the path and the cause
(``No space left on device (ENOSPC)``). Only ``kill -9`` (or a lost machine) can leave a
temporary file; ``remove_stale_temporaries`` clears those of a run directory.
"""

from __future__ import annotations

import errno
import os
import re
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


def write_failure(err: BaseException, path: Path) -> str | None:
    """Why writing ``path`` failed, or None if ``err`` is not a failed write.

    ``torch.save`` reports a failed write as a RuntimeError (``unexpected pos ...``) with the
    OSError behind it as its context; without one, a nearly full disk is taken as the cause."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError):
            return explain_os_error(seen, path)
        seen = seen.__cause__ or seen.__context__
    if free_bytes(path.parent) < NEARLY_FULL_BYTES:
        return describe_os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    return None


def explain_os_error(err: OSError, path: Path) -> str:
    """``describe_os_error``, unless a folder on the way to ``path`` is a symbolic link to
    nothing: ``mkdir`` then says "File exists", which sends people looking for a file."""
    if err.errno in (errno.EEXIST, errno.ENOENT) and (link := dangling_link(path)) is not None:
        return f"{link} is a symbolic link to {os.readlink(link)}, which does not exist"
    return describe_os_error(err)


def dangling_link(path: Path) -> Path | None:
    """``path`` or the nearest of its folders that is a symbolic link whose target is missing."""
    for candidate in (path, *path.parents):
        if candidate.is_symlink() and not candidate.exists():
            return candidate
    return None


def free_bytes(directory: Path) -> int:
    """Free space an unprivileged writer may use in ``directory``; huge when unknown."""
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return 1 << 62


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for the block to write; renamed over ``path`` when the
    block ends normally, removed on every other way out (Ctrl-C included).

    For writers that want a file name rather than an open file (``onnx``'s ``save``). A crash
    leaves the old file or the new one, never half of one; a failed write is a ``WriteError``
    naming ``path`` and the cause. The temporary is named ``.<name>.<pid>.<random>.tmp``, so
    that one a killed process left behind can be told from a live writer's
    (``remove_stale_temporaries``)."""
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        name = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        # mode 0o666 as open() uses, so the umask decides who may read the file
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        tmp = name
        yield tmp
        with tmp.open("rb+") as file:  # the writer may have closed it without a sync
            os.fsync(file.fileno())
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as err:
        cause = write_failure(err, path)
        if cause is None:
            raise
        raise WriteError(f"cannot write {path}: {cause}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it over ``path``
    (``atomic_path``): every file the repo writes goes through here."""
    with atomic_path(path) as tmp, tmp.open("wb") as file:
        write(file)
        file.flush()


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
        where = Path(err.filename) if err.filename is not None else path
        raise WriteError(f"cannot write {where}: {explain_os_error(err, where)}") from None


# ``atomic_path``'s temporary files: ``.<target name>.<pid of the writer>.<8 hex digits>.tmp``
TEMPORARY_NAME = re.compile(r"\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` (not below it) that ``atomic_path`` left
    behind in processes that are gone (``kill -9`` during a write); returns them.

    Safe only while the caller holds ``folder`` (``utils/run_lock.py``): a process id can be
    taken again by a new process, in which case its file is kept, never the other way round,
    but a writer in another pid namespace would look gone."""
    removed = []
    for entry in folder.iterdir():
        match = TEMPORARY_NAME.fullmatch(entry.name)
        if match and not process_alive(int(match["pid"])) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
