"""One training per run directory: an exclusive lock on ``<run>/.lock`` for the run's life.

The lock is ``flock``, which the operating system releases when its process ends, however it
ends: a crashed or killed run leaves nothing that blocks its resume. A second training in the
same directory (the same ``--run-name``, the same second-resolution default name, a
``--resume`` of a run still training) is refused at once. Under torchrun rank 0 holds it.

Holding the lock, a run removes the temporary files that writers killed mid-write (a
``kill -9`` during a save) left in the directory: no live process can be writing them.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError
from utils.safe_write import naming_write_errors, remove_stale_temporaries

LOCK_NAME = ".lock"


class RunInUseError(UserError):
    """Another training holds the run directory."""


@contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` (made if missing) for the block; RunInUseError if another process
    holds it. Ranks other than 0 of a torchrun job do not claim: rank 0 does for them."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    created = not run_dir.exists()
    with naming_write_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(
                f"{run_dir} is in use by another training ({holder(fd)}); wait for it to end, "
                "or start this one with another --run-name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        remove_stale_temporaries(run_dir)  # a killed writer's; none can be live while we hold it
        yield
    finally:
        if created:
            remove_if_unused(run_dir)
        os.close(fd)  # releases the lock


def remove_if_unused(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but its lock: the run failed before writing
    anything (bad data, say), and an empty directory would only look like a broken run."""
    try:
        if os.listdir(run_dir) == [LOCK_NAME]:
            (run_dir / LOCK_NAME).unlink()
            run_dir.rmdir()
    except OSError:
        pass  # another training took it meanwhile, or it is gone already


def holder(fd: int) -> str:
    """The process that holds the lock, as it wrote itself into the file."""
    pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f"process {pid}" if pid.isdigit() else "a process"
