"""Turning a trained checkpoint into a file to serve: ONNX, ``torch.export`` (.pt2) or
safetensors, each carrying the class names and the preprocessing a user needs to classify."""

from deploy.export import FORMATS, default_output, export_checkpoint
from deploy.load import load_exported
from deploy.metadata import export_metadata, sidecar_path

__all__ = [
    "FORMATS",
    "default_output",
    "export_checkpoint",
    "export_metadata",
    "load_exported",
    "sidecar_path",
]
