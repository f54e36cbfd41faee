"""Writing a checkpoint's model as an ONNX, a .pt2 (``torch.export``) or a safetensors file.

Every format holds the weights evaluation scores (``scored_weights``: the moving average where
the run kept one), in float32 whatever precision the run trained in: a serving runtime chooses
its own. ONNX and .pt2 hold the whole graph with a dynamic batch dimension; safetensors holds the
weights alone, rebuilt with ``create_model(**metadata["model_args"])`` (``deploy/load.py``).

Each file and its JSON sidecar is written atomically (``utils/safe_write.py``): a kill during an
export keeps the file it would have replaced, and a failed write is one line naming the file.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from deploy.metadata import encode_properties, export_metadata, write_sidecar
from models import create_model
from utils.checkpoint import load_state, scored_weights
from utils.safe_write import atomic_path, atomic_write

FORMATS = ("onnx", "pt2", "safetensors")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2", "safetensors": ".safetensors"}
INPUT_NAME = "images"
PT2_METADATA = "metadata.json"  # the name of the metadata among a .pt2's extra files


def default_output(checkpoint_path: Path, fmt: str) -> Path:
    """``checkpoints/<run>/best.pt`` -> ``checkpoints/<run>/best.onnx`` (or .pt2, .safetensors)."""
    return checkpoint_path.with_suffix(SUFFIXES[fmt])


class DivideBy(nn.Module):
    """Logits divided by a calibrated temperature (``evaluate.py --calibrate``)."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: Tensor) -> Tensor:
        return logits / self.temperature


def reference_model(checkpoint: dict[str, Any], softmax: bool = False) -> nn.Module:
    """The checkpoint's model in eval mode on the CPU, its logits divided by the checkpoint's
    temperature when it has one, followed by a softmax if ``softmax``."""
    model = create_model(**checkpoint["model_args"])
    load_state(model, checkpoint, "model", scored_weights(checkpoint))
    layers = [model]
    if checkpoint.get("temperature", 1.0) != 1.0:
        layers.append(DivideBy(checkpoint["temperature"]))
    if softmax:
        layers.append(nn.Softmax(dim=1))
    return (nn.Sequential(*layers) if len(layers) > 1 else model).eval()


def export_checkpoint(
    checkpoint: dict[str, Any], fmt: str, path: Path, softmax: bool = False
) -> dict[str, Any]:
    """Write the checkpoint's model to ``path`` in ``fmt`` and its metadata to ``<path>.json``;
    returns the metadata."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    if softmax and fmt == "safetensors":
        raise ValueError("safetensors holds weights alone: there is no graph to add a softmax to")
    metadata = export_metadata(checkpoint, softmax)
    if fmt == "safetensors":
        save_weights(checkpoint, metadata, path)
    else:
        model = reference_model(checkpoint, softmax)
        example = example_batch(metadata["input_side"])
        (export_onnx if fmt == "onnx" else export_pt2)(model, example, metadata, path)
    write_sidecar(metadata, path)
    return metadata


def example_batch(side: int) -> Tensor:
    # Two images, not one: torch.export fixes a dimension whose example size is 0 or 1.
    return torch.zeros(2, 3, side, side)


def dynamic_batch() -> tuple[dict[int, Any]]:
    """``dynamic_shapes`` of the one input: any batch size, fixed channels and side."""
    return ({0: torch.export.Dim("batch")},)


def export_onnx(model: nn.Module, example: Tensor, metadata: dict[str, Any], path: Path) -> None:
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=dynamic_batch(),
        input_names=[INPUT_NAME],
        output_names=["probabilities" if metadata["softmax"] else "logits"],
        verbose=False,
    )
    program.model.metadata_props.update(encode_properties(metadata))
    # One self-contained file: a ResNet-18 is far below protobuf's 2 GB limit.
    with atomic_path(path) as tmp:
        program.save(str(tmp), external_data=False)


def export_pt2(model: nn.Module, example: Tensor, metadata: dict[str, Any], path: Path) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_batch())
    # Into memory first: torch's zip writer, failing on a full disk, aborts the process when it
    # is collected later (its destructor throws), so it must never meet a failing file.
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={PT2_METADATA: json.dumps(metadata)})
    atomic_write(path, lambda file: file.write(buffer.getbuffer()))


def save_weights(checkpoint: dict[str, Any], metadata: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save  # an optional extra (requirements-export.txt)

    weights = {name: tensor.contiguous() for name, tensor in scored_weights(checkpoint).items()}
    data = save(weights, metadata=encode_properties(metadata))
    atomic_write(path, lambda file: file.write(data))
