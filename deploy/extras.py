"""The optional packages each export format needs, and a one-line way out when they are absent."""

from __future__ import annotations

import importlib

from deploy.errors import MissingExtraError

# Only what is imported here; torch.export (.pt2) is part of torch.
EXTRAS = {
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "pt2": (),
    "safetensors": ("safetensors",),
}


def require_extras(fmt: str) -> None:
    """Raise ``MissingExtraError`` naming the packages ``fmt`` needs when one cannot be imported."""
    missing = []
    for name in EXTRAS[fmt]:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(
            f"--format {fmt} needs {', '.join(missing)}: pip install -r requirements-export.txt"
        )
