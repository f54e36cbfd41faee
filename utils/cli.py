"""Shared command-line plumbing: user errors become one line on stderr and exit code 2.

So do the failures of the machine and of the paths given rather than of the code: a full disk,
no permission, a read-only file system, a file where a folder should be (an ``OSError`` with
one of ``MACHINE_ERRNOS``), wherever they happen; and Ctrl-C exits with 130, also while a
script's imports load.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from utils.errors import LaunchError, UserError
from utils.safe_write import describe_os_error

MACHINE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.EFBIG,
        errno.EIO,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.ENOTDIR,  # a path through a file
        errno.EISDIR,
        errno.EEXIST,  # a folder asked for where a file is
        errno.EMFILE,
        errno.ENFILE,
    }
)


@contextmanager
def interrupts_exit() -> Iterator[None]:
    """Ctrl-C inside prints "interrupted" and exits with 130 instead of a traceback.

    ``run_cli`` can only catch it once the script's imports have loaded; a script wraps its
    imports in this too, since importing torch takes seconds."""
    try:
        yield
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; a ``UserError`` or a machine's ``OSError`` prints ``error: ...`` and exits
    2 (or the error's ``exit_code``), Ctrl-C exits 130. A ``LaunchError`` prints in the first
    torchrun process of a machine only, as each of its processes raises the same one."""
    with interrupts_exit():
        try:
            code = main()
        except UserError as err:
            if not isinstance(err, LaunchError) or os.environ.get("LOCAL_RANK", "0") == "0":
                print(f"error: {err}", file=sys.stderr)
            sys.exit(getattr(err, "exit_code", 2))
        except OSError as err:
            if err.errno not in MACHINE_ERRNOS:
                raise
            where = f"{err.filename}: " if err.filename is not None else ""
            print(f"error: {where}{describe_os_error(err)}", file=sys.stderr)
            sys.exit(2)
    sys.exit(code or 0)
