"""export.py on a checkpoint of a real (tiny) training run: each file is loaded back with its
own runtime, as a user would, and compared with the PyTorch model on batches of two sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from data.augment import BatchTransform
from data.datasets import decode_image_file
from models import create_model
from tests.conftest import REAL_DATA, CliRunner, tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint, scored_weights

CLASSES = [f"class_{i}" for i in range(10)]  # the synthetic data set's
BATCH_SIZES = (3, 5)  # two sizes: the batch dimension must be dynamic
pytestmark = pytest.mark.slow  # each export traces the model for seconds


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding one run, ``checkpoints/s``, so that a bare ``best.pt`` finds it."""
    root = tmp_path_factory.mktemp("export")
    # A low learning rate keeps the logits near 1 after one epoch, so that an absolute
    # tolerance of 1e-4 is a tight one (one epoch at 0.05 leaves logits in the hundreds).
    overrides = ("train.epochs=1", "data.synthetic_samples=240", "optim.lr=0.01")
    fit(tiny_config("smoke", root, *overrides), root / "checkpoints" / "s")
    return root


@pytest.fixture(scope="module")
def checkpoint(workdir: Path) -> dict[str, Any]:
    return load_checkpoint(workdir / "checkpoints" / "s" / "best.pt")


def cifar_or_noise(count: int) -> Tensor:
    """uint8 (count, 3, 32, 32): one real CIFAR-10 test image per class where they are
    present, else seeded noise."""
    test_dir = REAL_DATA / "test"
    if not test_dir.is_dir():
        generator = torch.Generator().manual_seed(1)
        return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    class_dirs = sorted(d for d in test_dir.iterdir() if d.is_dir())[:count]
    return torch.stack([decode_image_file(sorted(d.glob("*.jpg"))[0]) for d in class_dirs])


def pytorch_outputs(checkpoint: dict[str, Any], images: Tensor) -> tuple[Tensor, Tensor]:
    """(model inputs (N, 3, S, S), logits (N, C)) of the checkpoint's own model."""
    model = create_model(**checkpoint["model_args"])
    model.load_state_dict(scored_weights(checkpoint))
    norm = checkpoint["normalization"]
    inputs = BatchTransform(norm["mean"], norm["std"], input_side=checkpoint["input_side"])(images)
    with torch.inference_mode():
        return inputs, model.eval()(inputs)


def export(run: CliRunner, workdir: Path, *args: str) -> str:
    """Run export.py on the run's best.pt; returns its stdout."""
    proc = run("export.py", "--ckpt", "best.pt", "--check-count", "8", *args, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "check: 8 images from seeded noise" in proc.stdout
    return proc.stdout


def onnx_runtime() -> Any:
    """onnxruntime, skipping the test when the ONNX extra is not installed."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def onnx_session(path: Path) -> Any:
    return onnx_runtime().InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_run(session: Any, inputs: Tensor) -> Tensor:
    return torch.from_numpy(session.run(None, {"images": inputs.numpy()})[0])


def pt2_load(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    extra_files = {"metadata.json": ""}
    module = torch.export.load(path, extra_files=extra_files).module()
    return module, json.loads(extra_files["metadata.json"])


def assert_describes_checkpoint(metadata: dict[str, Any], checkpoint: dict[str, Any]) -> None:
    assert metadata["class_names"] == CLASSES
    assert metadata["input_side"] == 32
    assert metadata["normalization"] == checkpoint["normalization"]
    assert metadata["model_args"] == checkpoint["model_args"]


def test_onnx_matches_pytorch_for_any_batch_size(
    workdir: Path, checkpoint: dict[str, Any], tmp_path: Path, run_in_process: CliRunner
) -> None:
    onnx_runtime()
    path = tmp_path / "model.onnx"
    export(run_in_process, workdir, "--format", "onnx", "--output", str(path))
    session = onnx_session(path)
    for size in BATCH_SIZES:
        inputs, logits = pytorch_outputs(checkpoint, cifar_or_noise(size))
        outputs = onnx_run(session, inputs)
        assert outputs.shape == (size, 10)
        assert (outputs - logits).abs().max() < 1e-4
    properties = session.get_modelmeta().custom_metadata_map
    metadata = {key: json.loads(value) for key, value in properties.items()}
    assert_describes_checkpoint(metadata, checkpoint)
    assert metadata["softmax"] is False
    assert json.loads((tmp_path / "model.onnx.json").read_text()) == metadata


def test_pt2_matches_pytorch_for_any_batch_size(
    workdir: Path, checkpoint: dict[str, Any], run_in_process: CliRunner
) -> None:
    stdout = export(run_in_process, workdir, "--format", "pt2")
    assert "wrote checkpoints/s/best.pt2" in stdout
    module, metadata = pt2_load(workdir / "checkpoints" / "s" / "best.pt2")
    for size in BATCH_SIZES:
        inputs, logits = pytorch_outputs(checkpoint, cifar_or_noise(size))
        with torch.inference_mode():
            outputs = module(inputs)
        assert outputs.shape == (size, 10)
        assert (outputs - logits).abs().max() < 1e-4
    assert_describes_checkpoint(metadata, checkpoint)
    sidecar = workdir / "checkpoints" / "s" / "best.pt2.json"
    assert json.loads(sidecar.read_text()) == metadata


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_softmax_gives_probabilities(
    fmt: str,
    workdir: Path,
    checkpoint: dict[str, Any],
    tmp_path: Path,
    run_in_process: CliRunner,
) -> None:
    if fmt == "onnx":
        onnx_runtime()
    path = tmp_path / f"model.{fmt}"
    export(run_in_process, workdir, "--format", fmt, "--softmax", "--output", str(path))
    inputs, logits = pytorch_outputs(checkpoint, cifar_or_noise(5))
    if fmt == "onnx":
        probabilities = onnx_run(onnx_session(path), inputs)
    else:
        with torch.inference_mode():
            probabilities = pt2_load(path)[0](inputs)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(5))
    torch.testing.assert_close(probabilities, logits.softmax(1), rtol=0, atol=1e-6)
    assert json.loads((tmp_path / f"model.{fmt}.json").read_text())["softmax"] is True


def test_safetensors_weights_rebuild_the_model_strictly(
    workdir: Path, checkpoint: dict[str, Any], tmp_path: Path, run_in_process: CliRunner
) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "weights.safetensors"
    export(run_in_process, workdir, "--format", "safetensors", "--output", str(path))
    metadata = json.loads((tmp_path / "weights.safetensors.json").read_text())
    assert_describes_checkpoint(metadata, checkpoint)
    model = create_model(**metadata["model_args"])
    model.load_state_dict(safetensors_torch.load_file(str(path)), strict=True)
    inputs, logits = pytorch_outputs(checkpoint, cifar_or_noise(5))
    with torch.inference_mode():
        assert torch.equal(model.eval()(inputs), logits)


def test_an_unknown_format_is_a_usage_error(workdir: Path, run_in_process: CliRunner) -> None:
    proc = run_in_process("export.py", "--ckpt", "best.pt", "--format", "torchscript", cwd=workdir)
    assert proc.returncode == 2
    assert "invalid choice: 'torchscript'" in proc.stderr


def test_a_missing_checkpoint_is_one_line(tmp_path: Path, run_in_process: CliRunner) -> None:
    proc = run_in_process("export.py", "--ckpt", "nowhere/best.pt", "--format", "pt2", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == "error: checkpoint nowhere/best.pt not found\n"


def test_a_missing_extra_says_how_to_install_it(
    tmp_path: Path, run_in_process: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    proc = run_in_process("export.py", "--ckpt", "best.pt", "--format", "onnx", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --format onnx needs ")
    assert "onnxruntime" in proc.stderr
    assert proc.stderr.endswith(": pip install -r requirements-export.txt\n")
