"""Classify new images with a trained checkpoint, from Python or through ``predict.py``.

    from evaluation.classifier import load_classifier
    clf = load_classifier("checkpoints/<run>/best.pt")
    probs = clf.predict([Image.open("cat.jpg")])  # (1, C); columns follow clf.class_names

Images get the checkpoint's own preprocessing, as in evaluation: any mode to 8-bit RGB
(``data/image_modes.py``), the short side resized to the side the model saw and the centre
cropped square (``resize_square``, as image folders are at training), the training set's
normalisation, and the recorded precision and memory layout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from data.augment import BatchTransform
from data.datasets import decode_image_file, image_tensor, resize_square
from evaluation.inference import Batches, load_model, predict
from utils.checkpoint import load_checkpoint, resolve_checkpoint_path
from utils.device import recorded_fast_path, resolve_device
from utils.errors import CheckpointError, DataError
from utils.run_log import TTA_MODES

DEFAULT_BATCH_SIZE = 256
# The images' own side, for checkpoints from before the input side was recorded.
NATIVE_SIDES = {"cifar10": 32, "cifar100": 32, "synthetic": 32}


@dataclass
class FilePredictions:
    files: list[Path]  # the files read, in the order given
    probabilities: Tensor  # (len(files), C) float32
    skipped: list[tuple[Path, str]]  # the files that could not be read, and why


@dataclass
class Classifier:
    model: nn.Module
    transform: BatchTransform
    autocast: Callable[[], AbstractContextManager]
    class_names: list[str]
    input_side: int  # images are resized to input_side x input_side
    device: torch.device
    checkpoint_path: Path
    tta: str = "none"  # test-time augmentation, as evaluate.py's --tta
    batch_size: int = DEFAULT_BATCH_SIZE
    temperature: float = 1.0  # logits are divided by it (evaluate.py --calibrate)

    def predict(self, images: Sequence[Image.Image] | Tensor) -> Tensor:
        """(N, C) float32 probabilities of PIL images (any mode and size) or of a uint8 batch
        (N, 3, H, W)."""
        batch = self.as_batch(images)
        chunks = batch.split(self.batch_size)
        batches = [(chunk.to(self.device), torch.zeros(len(chunk))) for chunk in chunks]
        return self.probabilities(batches, len(batches), progress=False)[0]

    def predict_files(self, files: Sequence[Path], progress: bool = True) -> FilePredictions:
        """Probabilities of the image files; an unreadable one is skipped, with the reason."""
        files = list(files)
        skipped: list[tuple[Path, str]] = []
        total = math.ceil(len(files) / self.batch_size)
        probs, indices = self.probabilities(self.file_batches(files, skipped), total, progress)
        return FilePredictions([files[i] for i in indices.tolist()], probs, skipped)

    def as_batch(self, images: Sequence[Image.Image] | Tensor) -> Tensor:
        """uint8 (N, 3, S, S) at the model's side S."""
        side = self.input_side
        if isinstance(images, Tensor):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(
                    f"expected a uint8 batch (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
                )
            if images.shape[-2:] == (side, side):
                return images
        else:
            images = [image_tensor(image) for image in images]
        resized = [resize_square(image, side) for image in images]
        return torch.stack(resized) if resized else torch.empty(0, 3, side, side, dtype=torch.uint8)

    def file_batches(
        self, files: list[Path], skipped: list[tuple[Path, str]]
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """(uint8 images (B, 3, S, S) on the device, their indices in ``files``) per batch,
        decoded in threads; an unreadable file goes into ``skipped`` instead."""
        read = partial(read_resized, side=self.input_side)
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            for start in range(0, len(files), self.batch_size):
                chunk = files[start : start + self.batch_size]
                images, indices = [], []
                for i, image in enumerate(pool.map(read, chunk), start):
                    if isinstance(image, DataError):
                        skipped.append((files[i], str(image)))
                    else:
                        images.append(image)
                        indices.append(i)
                if images:
                    yield torch.stack(images).to(self.device), torch.tensor(indices)

    def probabilities(self, batches: Batches, total: int, progress: bool) -> tuple[Tensor, Tensor]:
        """(N, C) float32 probabilities on the CPU, and the (N,) labels the batches carried."""
        outputs = list(
            predict(
                self.model,
                batches,
                self.transform,
                self.autocast,
                total=total,
                desc="predict",
                progress=progress,
                tta=self.tta,
            )
        )
        if not outputs:
            return torch.empty(0, len(self.class_names)), torch.empty(0, dtype=torch.int64)
        probs = torch.cat([(logits / self.temperature).softmax(1) for logits, _ in outputs]).cpu()
        return probs, torch.cat([labels for _, labels in outputs]).cpu()


def read_resized(path: Path, side: int) -> Tensor | DataError:
    """(3, side, side) uint8 of an image file, or the error that says why it cannot be read
    (returned, not raised, so that one bad file in a batch does not stop the others)."""
    try:
        return resize_square(decode_image_file(path), side)
    except DataError as err:
        return err


def model_input_side(checkpoint: dict[str, Any]) -> int:
    """The side of the square images the model saw in training."""
    data = checkpoint["config"].get("data", {})
    side = checkpoint.get("input_side") or data.get("image_size")
    side = side or NATIVE_SIDES.get(data.get("dataset"))
    if side is None:
        raise CheckpointError(
            "the checkpoint records no input side and its data set has no fixed one; "
            "retrain with this version, which records it"
        )
    return side


def load_classifier(
    ckpt: str | Path,
    device: str = "auto",
    tta: str = "none",
    batch_size: int = DEFAULT_BATCH_SIZE,
    runs_dir: Path = Path("checkpoints"),
) -> Classifier:
    """A classifier of the checkpoint ``ckpt``: a path, a run directory, or a bare name
    (``best.pt``) meaning that file in the newest run under ``runs_dir``."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    path = resolve_checkpoint_path(str(ckpt), runs_dir)
    checkpoint = load_checkpoint(path)
    torch_device = resolve_device(device, "device")
    fast_path = recorded_fast_path(checkpoint).on(torch_device, strict=False)
    side = model_input_side(checkpoint)
    norm = checkpoint["normalization"]
    transform = BatchTransform(
        norm["mean"], norm["std"], input_side=side, channels_last=fast_path.channels_last
    )
    model = load_model(checkpoint, torch_device, fast_path)
    autocast = fast_path.autocast(torch_device)
    names = list(checkpoint["class_names"])
    return Classifier(
        model=model,
        transform=transform,
        autocast=autocast,
        class_names=names,
        input_side=side,
        device=torch_device,
        checkpoint_path=path,
        tta=tta,
        batch_size=batch_size,
        temperature=checkpoint.get("temperature", 1.0),
    )
