"""Run names become folders: each must be one folder name, and its folder must lie inside the
output folder, so that no name (``--run-name ..``, a config's ``name``, a sweep plan's run
``../../x``) writes anywhere else."""

from __future__ import annotations

import os
from pathlib import Path

from utils.errors import UserError
from utils.yaml_file import excerpt


class RunNameError(UserError):
    """A run name that is not one folder name inside the output folder."""


def check_run_name(name: str, where: str) -> str:
    """``name`` if it is one path component: not empty, not ``.`` or ``..``, without a
    separator or a NUL; else a RunNameError naming ``where`` it came from."""
    separators = {"/", "\0", os.sep, os.altsep} - {None}
    if name in ("", ".", "..") or any(s in name for s in separators):
        raise RunNameError(
            f"{where}: the run name {excerpt(name)} is not a folder name (it may not be empty, "
            "'.' or '..', or hold '/'); choose a name such as lr01"
        )
    return name


def run_directory(output_dir: Path, name: str, where: str) -> Path:
    """``output_dir/name``, refused unless ``name`` is one folder name and the folder, links
    followed, lies directly inside ``output_dir``."""
    run_dir = output_dir / check_run_name(name, where)
    if run_dir.resolve().parent != output_dir.resolve():
        raise RunNameError(
            f"{run_dir}: resolves to {run_dir.resolve()}, outside {output_dir}; a run's folder "
            "must lie inside its output folder (is it a symbolic link?)"
        )
    return run_dir
