"""Errors of exporting, for people: the CLI prints them as one line and exits 2."""

from utils.errors import UserError


class ExportError(UserError):
    """An export that could not be made, or whose file disagrees with the PyTorch model."""


class MissingExtraError(ExportError):
    """A format whose optional packages (``requirements-export.txt``) are not installed."""
