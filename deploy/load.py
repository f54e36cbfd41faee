"""Loading an exported file back: a function of normalised images and the file's own metadata.

Each loader reads only the exported file, not the checkpoint or the sidecar JSON, so what it
returns is what a user of the file alone gets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deploy.export import INPUT_NAME, PT2_METADATA
from deploy.metadata import decode_properties
from models import ResNet, create_model

# float32 (N, 3, S, S) normalised images -> (N, C) logits, or probabilities with --softmax
Runner = Callable[[Tensor], Tensor]


def load_exported(path: Path, fmt: str) -> tuple[Runner, dict[str, Any]]:
    """A runner of the exported file ``path`` of format ``fmt``, and its metadata."""
    loaders = {"onnx": load_onnx, "pt2": load_pt2, "safetensors": load_safetensors_runner}
    return loaders[fmt](path)


def load_onnx(path: Path) -> tuple[Runner, dict[str, Any]]:
    import onnxruntime  # an optional extra (requirements-export.txt)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: Tensor) -> Tensor:
        (outputs,) = session.run(None, {INPUT_NAME: images.numpy()})
        return torch.from_numpy(outputs)

    return run, decode_properties(session.get_modelmeta().custom_metadata_map)


def load_pt2(path: Path) -> tuple[Runner, dict[str, Any]]:
    extra_files = {PT2_METADATA: ""}
    module = torch.export.load(path, extra_files=extra_files).module()
    return without_grad(module), json.loads(extra_files[PT2_METADATA])


def load_safetensors_model(path: Path) -> tuple[ResNet, dict[str, Any]]:
    """The model rebuilt from a safetensors export, in eval mode, and its metadata."""
    from safetensors import safe_open  # an optional extra (requirements-export.txt)
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as weights:
        metadata = decode_properties(weights.metadata())
    model = create_model(**metadata["model_args"])
    model.load_state_dict(load_file(str(path)))
    return model.eval(), metadata


def load_safetensors_runner(path: Path) -> tuple[Runner, dict[str, Any]]:
    model, metadata = load_safetensors_model(path)
    return without_grad(model), metadata


def without_grad(module: Callable[[Tensor], Tensor]) -> Runner:
    def run(images: Tensor) -> Tensor:
        with torch.inference_mode():
            return module(images)

    return run
