"""Shared command-line plumbing: user errors become one line on stderr and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable

from utils.errors import UserError


def run_cli(main: Callable[[], int | None]) -> None:
    """Run ``main``; a ``UserError`` prints ``error: ...`` and exits 2, Ctrl-C exits 130."""
    try:
        code = main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
