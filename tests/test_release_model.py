"""The trained model shipped in checkpoints/: small, self-describing, and usable on a fresh
clone by predict.py (and so by evaluate.py and export.py, which read checkpoints the same way)."""

import json
from pathlib import Path

import torch

from tests.conftest import REPO, CliRunner
from utils.checkpoint import load_checkpoint

RELEASE = REPO / "checkpoints" / "resnet18-cifar10.pt"


def test_the_release_is_small_half_precision_and_records_its_test_score() -> None:
    assert RELEASE.stat().st_size < 25 * 2**20
    checkpoint = load_checkpoint(RELEASE)
    weights = checkpoint["model"]
    assert all(t.dtype == torch.float16 for t in weights.values() if t.is_floating_point())
    assert "optimizer" not in checkpoint and checkpoint["class_names"][3] == "cat"
    scores = {s["tta"]: s for s in checkpoint["release"]["scores"]}
    assert scores["none"]["split"] == "test" and scores["none"]["num_samples"] == 10_000
    assert scores["none"]["accuracy"] > 0.8


def test_predict_classifies_real_test_images_with_the_release(
    run_in_process: CliRunner, real_data: Path, tmp_path: Path
) -> None:
    classes = ("airplane", "cat", "ship", "truck")
    images = [
        path for name in classes for path in sorted((real_data / "test" / name).iterdir())[:10]
    ]
    output = tmp_path / "predictions.json"
    args = ["--ckpt", str(RELEASE), *map(str, images), "--output", str(output)]
    proc = run_in_process("predict.py", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(output.read_text())
    correct = sum(Path(row["path"]).parent.name == row["predicted"] for row in rows)
    assert correct >= 30, rows  # 40 images, the release scores 90% on the test split
