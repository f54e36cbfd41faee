"""A release model: a trained checkpoint cut to what prediction, evaluation and export need,
with its weights in half precision and its measured test scores inside.

    python -m deploy.release checkpoints/<run>/best.pt --output checkpoints/<name>.pt \\
        --scores checkpoints/<run>/eval-test/metrics.json \\
                 checkpoints/<run>/eval-test-flip-shift/metrics.json

The file drops the optimiser, the early-stopping, RNG and run state, so a release cannot be
resumed; ``predict.py``, ``evaluate.py`` and ``export.py`` read it as any checkpoint (the
weights are cast back to float32 when they load into the model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from utils.checkpoint import load_checkpoint, save_checkpoint, scored_weights
from utils.cli import run_cli
from utils.errors import UserError

KEPT_KEYS = (
    "format_version",
    "model_args",
    "class_names",
    "normalization",
    "input_side",
    "fast_path",
    "val_indices",
    "data_fingerprint",
    "config",
    "epoch",
    "step",
    "metrics",
)
SCORE_KEYS = ("split", "tta", "num_samples", "accuracy", "loss", "top5_accuracy")


def release_payload(
    checkpoint: dict[str, Any], scores: list[dict[str, Any]], dtype: torch.dtype
) -> dict[str, Any]:
    """The release of ``checkpoint``: the weights it scores with (the average, if it kept one)
    in ``dtype``, beside the metadata that evaluation reads and the ``scores`` it got."""
    weights = {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor
        for name, tensor in scored_weights(checkpoint).items()
    }
    payload = {key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}
    payload["model"] = weights
    payload["release"] = {
        "weights_dtype": str(dtype).removeprefix("torch."),
        "scores": [{key: score[key] for key in SCORE_KEYS if key in score} for score in scores],
    }
    return payload


def read_scores(path: Path) -> dict[str, Any]:
    try:
        scores = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a metrics.json written by evaluate.py ({err})") from None
    if not isinstance(scores, dict) or not isinstance(scores.get("accuracy"), float):
        raise UserError(f"{path}: not a metrics.json written by evaluate.py (no accuracy)")
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's best.pt")
    parser.add_argument("--output", type=Path, required=True, help="the release file")
    parser.add_argument(
        "--scores", type=Path, nargs="*", default=[], help="evaluate.py metrics.json files"
    )
    parser.add_argument("--dtype", choices=("float16", "bfloat16"), default="float16")
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    scores = [read_scores(path) for path in args.scores]
    payload = release_payload(checkpoint, scores, getattr(torch, args.dtype))
    save_checkpoint(payload, args.output)
    size_mb = args.output.stat().st_size / 2**20
    print(f"wrote {args.output} ({size_mb:.1f} MiB)")


if __name__ == "__main__":
    run_cli(main)
