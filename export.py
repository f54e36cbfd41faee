"""Export a trained checkpoint for serving: ONNX, torch.export (.pt2) or safetensors weights.

python export.py --ckpt best.pt --format onnx              # newest run's best.pt -> best.onnx
python export.py --ckpt best.pt --format onnx --softmax    # outputs probabilities, not logits
python export.py --ckpt checkpoints/<run>/best.pt --format pt2 --output model.pt2
python export.py --ckpt best.pt --format safetensors       # weights + JSON to rebuild the model
python export.py --ckpt best.pt --format onnx --check-images data/cifar10-jpg/test

Each file carries the class names and the preprocessing (mean, std, input side, resize rule),
and gets a JSON copy of them beside it (<file>.json). The file is then loaded back and its
outputs compared with PyTorch's on real images (--check-images) or seeded noise. ONNX and
safetensors need the optional extra: pip install -r requirements-export.txt. See docs/export.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from utils.cli import interrupts_exit, run_cli

with interrupts_exit():  # Ctrl-C while torch loads: exit 130, not a traceback
    from deploy.errors import ExportError
    from deploy.export import FORMATS, default_output, export_checkpoint
    from deploy.extras import require_extras
    from deploy.load import load_exported
    from deploy.metadata import sidecar_path
    from deploy.verify import TOLERANCE, max_abs_difference, sample_images
    from utils.checkpoint import load_checkpoint, resolve_checkpoint_path
    from utils.cli_args import add_checkpoint_args, whole_number_at_least


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_checkpoint_args(parser, device=False)
    parser.add_argument("--format", required=True, choices=FORMATS, help="the file to write")
    parser.add_argument(
        "--output", type=Path, help="where to write it (default: beside the checkpoint)"
    )
    parser.add_argument(
        "--softmax",
        action="store_true",
        help="end the graph with a softmax: outputs probabilities instead of logits",
    )
    parser.add_argument(
        "--check-images",
        type=Path,
        help="a folder of images (searched recursively) to check the export on "
        "(default: seeded noise)",
    )
    parser.add_argument(
        "--check-count",
        type=whole_number_at_least(0),
        default=100,
        help="images to check the export on; 0 skips the check (default: 100)",
    )
    args = parser.parse_args()
    if args.softmax and args.format == "safetensors":
        parser.error("--softmax: safetensors holds weights alone, with no graph to add it to")
    return args


def main() -> None:
    args = parse_args()
    require_extras(args.format)
    path = resolve_checkpoint_path(args.ckpt, args.runs_dir)
    print(f"checkpoint: {path}")
    checkpoint = load_checkpoint(path)
    output = args.output or default_output(path, args.format)
    export_checkpoint(checkpoint, args.format, output, args.softmax)
    size_mb = output.stat().st_size / 1e6
    print(f"wrote {output} ({size_mb:.1f} MB) and {sidecar_path(output)}")
    if args.check_count == 0:
        return
    runner, metadata = load_exported(output, args.format)
    images = sample_images(args.check_images, args.check_count, metadata["input_side"])
    difference = max_abs_difference(checkpoint, runner, metadata, images)
    source = args.check_images or "seeded noise"
    what = "probabilities" if args.softmax else "logits"
    print(
        f"check: {len(images)} images from {source}: max abs difference of {what} vs PyTorch "
        f"{difference:.2e}"
    )
    if difference > TOLERANCE:
        raise ExportError(
            f"{output} differs from PyTorch by {difference:.2e} (more than {TOLERANCE:g}); "
            "do not use it, and report the torch and exporter versions"
        )


if __name__ == "__main__":
    run_cli(main)
