"""What an exported file says about itself: class names, preprocessing and the model's args.

The same dict goes inside the file where the format has room for it (ONNX ``metadata_props``,
a .pt2's extra files, the safetensors header) and into a JSON sidecar ``<file>.json``. Inside
the file each top-level key is one property whose value is JSON, so a user of the file alone
decodes it with ``json.loads`` per value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from utils.checkpoint import steps_into_next_epoch
from utils.errors import CheckpointError
from utils.safe_write import write_text_atomic

METADATA_VERSION = 1
# What data/datasets.resize_square and data/augment.BatchTransform do at evaluation.
RESIZE_RULE = (
    "convert to 8-bit RGB; resize the short side to input_side (bilinear, antialiased); "
    "crop the centre input_side x input_side"
)
INPUT_RULE = "float32 (N, 3, input_side, input_side): RGB / 255, then (x - mean) / std per channel"


def export_metadata(checkpoint: dict[str, Any], softmax: bool) -> dict[str, Any]:
    """The metadata of a file exported from ``checkpoint`` (outputs probabilities if
    ``softmax``, else logits)."""
    side = checkpoint.get("input_side")
    if side is None:
        raise CheckpointError("the checkpoint records no input side; retrain with this version")
    norm = checkpoint["normalization"]
    return {
        "format_version": METADATA_VERSION,
        "class_names": list(checkpoint["class_names"]),
        "input_side": int(side),
        "normalization": {"mean": list(norm["mean"]), "std": list(norm["std"])},
        "resize": RESIZE_RULE,
        "input": INPUT_RULE,
        "output": "probabilities (N, C), softmax over classes" if softmax else "logits (N, C)",
        "softmax": softmax,
        "model_args": dict(checkpoint["model_args"]),
        # graphs (ONNX, pt2) already divide their logits by it; safetensors weights do not
        "temperature": float(checkpoint.get("temperature", 1.0)),
        # a last.pt saved inside an epoch holds this many of the next epoch's steps
        "epoch": checkpoint.get("epoch"),
        "steps_into_next_epoch": steps_into_next_epoch(checkpoint),
    }


def encode_properties(metadata: dict[str, Any]) -> dict[str, str]:
    """One string property per key, its value JSON (formats that store str -> str maps)."""
    return {key: json.dumps(value) for key, value in metadata.items()}


def decode_properties(properties: dict[str, str]) -> dict[str, Any]:
    """The inverse of ``encode_properties``."""
    return {key: json.loads(value) for key, value in properties.items()}


def sidecar_path(path: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return path.with_name(path.name + ".json")


def write_sidecar(metadata: dict[str, Any], path: Path) -> Path:
    """Write the metadata of the exported file ``path`` beside it; returns the JSON's path."""
    sidecar = sidecar_path(path)
    write_text_atomic(sidecar, json.dumps(metadata, indent=2) + "\n")
    return sidecar
