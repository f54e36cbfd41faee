"""Checking an exported file against the PyTorch model it came from, on the same images.

The images are real ones from a folder when given, else seeded noise. They go through in
batches of ``CHECK_BATCH`` (100 images: 32, 32, 32 and 4), so a file whose batch dimension is
not dynamic fails the check too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from data.augment import BatchTransform
from data.datasets import IMAGE_EXTENSIONS, decode_image_file, resize_square
from deploy.errors import ExportError
from deploy.export import reference_model
from deploy.load import Runner
from utils.errors import DataError

CHECK_BATCH = 32
# Float32 outputs of one model through two runtimes agree to about 1e-6 of their size (a few
# 1e-5 for logits in the hundreds); a difference far above that is a wrong graph.
TOLERANCE = 1e-3


def sample_images(folder: Path | None, count: int, side: int) -> Tensor:
    """uint8 (count, 3, side, side): images spread evenly over ``folder`` (searched
    recursively, so ``<class>/<image>`` trees give every class), or seeded noise if no folder."""
    if folder is None:
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")
    step = max(1, len(files) // count)
    return torch.stack([resize_square(decode_image_file(p), side) for p in files[::step][:count]])


def max_abs_difference(
    checkpoint: dict[str, Any], runner: Runner, metadata: dict[str, Any], images: Tensor
) -> float:
    """The largest absolute difference between the exported file's outputs (``runner``) and the
    checkpoint's PyTorch model's, on uint8 ``images`` preprocessed as ``metadata`` says."""
    norm = metadata["normalization"]
    transform = BatchTransform(norm["mean"], norm["std"], input_side=metadata["input_side"])
    reference = reference_model(checkpoint, metadata["softmax"])
    largest = 0.0
    with torch.inference_mode():
        for batch in images.split(CHECK_BATCH):
            inputs = transform(batch)  # (B, 3, S, S) float32
            outputs, expected = runner(inputs), reference(inputs)  # (B, C)
            if outputs.shape != expected.shape:
                raise ExportError(
                    f"the exported file gave outputs {tuple(outputs.shape)} for a batch of "
                    f"{len(batch)}; PyTorch gives {tuple(expected.shape)}"
                )
            largest = max(largest, (outputs - expected).abs().max().item())
    return largest
