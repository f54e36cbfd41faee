"""Training throughput of this repo's pipeline against a plain torchvision reference.

Both run in one invocation, alternating, with the same batch size and the same images:
- reference: torchvision resnet18, ImageFolder + PIL transforms, DataLoader (2 workers), fp32;
- repo: in-memory uint8 data, batched augmentation, channels_last, the configured precision,
  foreach SGD, through the real training loop (``training.loop.train_one_epoch``).

    python -m benchmarks.throughput                      # CIFAR-10 JPEGs from ../shared if present
    python -m benchmarks.throughput --sizes 32 224 --stems imagenet --steps 10
    python -m benchmarks.throughput --device cuda --stems cifar --batch 500

On a GPU each timing waits for the device before the clock stops; the layout probe and the
matmul peak are the CPU's and are left out there, and fp16 is allowed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision import transforms

from benchmarks.peak import matmul_peak, matmul_peak_gflops, training_gflop_per_image
from data import channel_stats
from data.augment import BatchTransform
from data.datasets import ImageSet, folder_image_set, synthetic_image_set
from data.loader import InMemoryLoader
from evaluation.inference import predict
from models import apply_layout, create_model
from training.autotune import faster_precision, probe_nchw_stages, time_training_step, wants_probe
from training.loop import StepContext, default_sync_every, epoch_generator, train_one_epoch
from training.optimizer import build_optimizer
from training.schedule import LrSchedule
from utils.config import OptimConfig, ScheduleConfig
from utils.device import (
    autocast_factory,
    configure_cuda,
    resolve_device,
    resolve_precision,
    synchronize,
)
from utils.hardware import describe_hardware, peak_rss_mib
from utils.safe_write import write_text_atomic

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpg/train"


def write_synthetic_folder(root: Path, count: int = 2000) -> Path:
    """A JPEG ImageFolder for machines without the CIFAR-10 copy."""
    from PIL import Image

    images = synthetic_image_set(count, 10)
    for i, (image, label) in enumerate(zip(images.images, images.labels, strict=True)):
        folder = root / f"class_{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.jpg", quality=75)
    return root


def reference_model(stem: str) -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    if stem == "cifar":
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    return model


def reference_img_per_s(
    folder: Path, stem: str, size: int, batch: int, steps: int, device: torch.device
) -> float:
    """The textbook pipeline: PIL transforms in DataLoader workers, fp32, default SGD."""
    ops = [transforms.Resize(size)] if size != 32 else []
    ops += [
        transforms.RandomCrop(size, padding=4 * size // 32),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
    ]
    dataset = torchvision.datasets.ImageFolder(str(folder), transforms.Compose(ops))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=2, persistent_workers=False
    )
    model = reference_model(stem).train().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batches = iter(loader)
    next(batches)  # worker start-up is not throughput
    start = time.perf_counter()
    for images, labels in itertools.islice(batches, steps):
        logits = model(images.to(device, non_blocking=True))
        loss = nn.functional.cross_entropy(logits, labels.to(device, non_blocking=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def repo_img_per_s(
    images: torch.Tensor,
    labels: torch.Tensor,
    stem: str,
    size: int,
    batch: int,
    steps: int,
    precision: str,
    nchw_stages: list[str],
    device: torch.device,
    compile_model: bool = False,
) -> tuple[float, float]:
    """The repo's path: in-memory batches, batched augmentation, channels_last (but
    ``nchw_stages``), autocast, the optimiser and host reads training uses. Returns (img/s
    over ``steps`` steps, seconds of the first step, compilation included)."""
    mean, std = channel_stats(images[:5000])
    transform = BatchTransform(mean, std, True, 4, None if size == 32 else size, True)
    loader = InMemoryLoader(images, labels, batch, shuffle=True, device=device)
    model = apply_layout(create_model(num_classes=10, stem=stem).to(device), nchw_stages)
    optim = OptimConfig(lr=0.01, momentum=0.9, weight_decay=1e-4)
    ctx = StepContext(
        model=torch.compile(model) if compile_model else model,
        optimizer=build_optimizer(model, optim, optim.lr),
        criterion=nn.CrossEntropyLoss(),
        schedule=LrSchedule(ScheduleConfig(), 0.01, 1, steps + 1),
        autocast=autocast_factory(precision, device),
        scaler=torch.amp.GradScaler("cuda") if precision == "fp16" else None,
        sync_every=default_sync_every(device),
    )
    gen = epoch_generator(0, 0, device)
    start = time.perf_counter()
    train_one_epoch(ctx, itertools.islice(loader.batches(0), 2), transform, gen, 0, 2)  # warm-up
    synchronize(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    train_one_epoch(ctx, itertools.islice(loader.batches(1), steps), transform, gen, 2, steps)
    synchronize(device)
    return steps * batch / (time.perf_counter() - start), first


def repo_eval_img_per_s(
    images: torch.Tensor,
    stem: str,
    size: int,
    precision: str,
    nchw_stages: list[str],
    device: torch.device,
) -> float:
    model = apply_layout(create_model(num_classes=10, stem=stem).to(device), nchw_stages)
    transform = BatchTransform(
        [0.5] * 3, [0.25] * 3, input_side=None if size == 32 else size, channels_last=True
    )
    subset = images[:2048]
    labels = torch.zeros(len(subset), dtype=torch.long)
    loader = InMemoryLoader(subset, labels, 512, False, device=device)
    autocast = autocast_factory(precision, device)
    start = time.perf_counter()
    for _ in predict(model, loader.batches(), transform, autocast):
        pass
    synchronize(device)
    return len(subset) / (time.perf_counter() - start)


def training_precision(
    requested: str, stem: str, size: int, batch: int, device: torch.device
) -> str:
    """What training would use: ``auto`` times bf16 against fp32 on a CPU, as ``fit`` does."""
    if not wants_probe(requested, device):
        return resolve_precision(requested, device)
    timer = time_training_step(lambda: create_model(num_classes=10, stem=stem), size, batch, True)
    return faster_precision(timer)


def time_alternating(
    runners: dict[str, Callable[[], float]], repeats: int
) -> dict[str, list[float]]:
    """img/s of each runner, ``repeats`` times, in turn, so that machine noise hits all alike."""
    timed: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            timed[name].append(runner())
    return timed


def median_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def measure_one(
    args: argparse.Namespace,
    folder: Path,
    data: ImageSet,
    stem: str,
    size: int,
) -> dict[str, Any]:
    """One stem and input size: the reference against the repo (and, where the layout probe
    moved stages to NCHW, against the repo in channels_last throughout)."""
    device = args.device
    precision = training_precision(args.precision, stem, size, args.batch, device)
    on_cpu = device.type == "cpu"
    steps = args.steps if (stem == "imagenet" and size <= 64) or not on_cpu else args.steps // 4
    steps = min(max(3, steps), usable_steps(len(data.labels), args.batch))
    nchw = []
    if on_cpu:
        model = create_model(num_classes=10, stem=stem)
        nchw = probe_nchw_stages(model, size, args.batch, precision)

    def repo(layout: list[str]) -> Callable[[], float]:
        common = (data.images, data.labels, stem, size, args.batch, steps, precision)
        return lambda: repo_img_per_s(*common, layout, device)[0]

    runners = {
        "reference": lambda: reference_img_per_s(folder, stem, size, args.batch, steps, device),
        "repo": repo(nchw),
    }
    if nchw:
        runners["repo_all_channels_last"] = repo([])
    timed = time_alternating(runners, args.repeats)
    gflop = training_gflop_per_image(stem, size)
    repo_img_s = statistics.median(timed["repo"])
    row = {
        "stem": stem,
        "size": size,
        "steps": steps,
        "precision": precision,
        "nchw_stages": nchw,
        "reference_img_s": round(statistics.median(timed["reference"]), 1),
        "repo_img_s": round(repo_img_s, 1),
        "ratio": round(median_ratio(timed["repo"], timed["reference"]), 2),
        "repo_eval_img_s": round(
            repo_eval_img_per_s(data.images, stem, size, precision, nchw, device), 1
        ),
        "train_gflop_per_image": round(gflop, 3),
        "repo_gflop_s": round(repo_img_s * gflop, 1),
    }
    if on_cpu:
        peak = matmul_peak_gflops(precision)
        row["fraction_of_matmul_peak"] = round(repo_img_s * gflop / peak, 3)
    if nchw:
        row["layout_speedup"] = round(
            median_ratio(timed["repo"], timed["repo_all_channels_last"]), 3
        )
    return row


def add_compiled(args: argparse.Namespace, data: ImageSet, row: dict[str, Any]) -> None:
    """The repo's path under ``torch.compile``, into ``row`` (timed after the eager row is
    printed, so that a compilation cut short loses nothing else)."""
    common = (data.images, data.labels, row["stem"], row["size"], args.batch, row["steps"])
    compiled, warmup = repo_img_per_s(
        *common, row["precision"], row["nchw_stages"], args.device, compile_model=True
    )
    row["compiled_img_s"] = round(compiled, 1)
    row["compile_warmup_s"] = round(warmup, 1)


def usable_steps(images: int, batch: int) -> int:
    """Timed steps the images allow: each pipeline spends a batch or two warming up first,
    and img/s counts only the steps taken."""
    steps = images // batch - 2
    if steps < 3:
        raise SystemExit(
            f"{images} images make too few batches of {batch} to time; "
            "use a smaller --batch or a larger --folder"
        )
    return steps


def measure(args: argparse.Namespace, folder: Path) -> dict:
    data = folder_image_set(folder, None, Path(".cache/datasets"))
    results = []
    for stem, size in itertools.product(args.stems, args.sizes):
        results.append(measure_one(args, folder, data, stem, size))
        print(json.dumps(results[-1]), flush=True)
        if args.compile:
            add_compiled(args, data, results[-1])
            print(json.dumps(results[-1]), flush=True)
    peaks = {}
    if args.device.type == "cpu":
        precisions = {row["precision"] for row in results}
        peaks = {precision: matmul_peak(precision) for precision in precisions}
    return {
        "hardware": describe_hardware(args.device),
        "batch_size": args.batch,
        "repeats": args.repeats,
        "matmul_peak_gflop_s": dict(sorted(peaks.items())),
        "peak_rss_mib": peak_rss_mib(),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="an ImageFolder split")
    parser.add_argument("--stems", nargs="+", default=["imagenet", "cifar"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps...")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/throughput.json"))
    args = parser.parse_args()
    args.device = resolve_device(args.device, "--device")
    configure_cuda(args.device, deterministic=False)  # cuDNN picks kernels, as in training
    resolve_precision(args.precision, args.device)  # fp16 off CUDA fails here, in one line
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder if args.folder.is_dir() else write_synthetic_folder(Path(tmp))
        report = measure(args, folder)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(report, indent=2) + "\n")
    print(f"peak matmul GFLOP/s {report['matmul_peak_gflop_s']}; wrote {args.output}")
    for row in report["results"]:
        compiled = (
            f", compiled {row['compiled_img_s']:.0f} img/s after {row['compile_warmup_s']}s"
            if "compiled_img_s" in row
            else ""
        )
        print(
            f"{row['stem']:>8} {row['size']:>4}px {row['precision']}: "
            f"repo {row['repo_img_s']:>7.1f} img/s, "
            f"reference {row['reference_img_s']:>7.1f} img/s, ratio {row['ratio']:.2f}x, "
            f"eval {row['repo_eval_img_s']:.0f} img/s, "
            + (
                f"{row['fraction_of_matmul_peak']:.0%} of peak"
                if "fraction_of_matmul_peak" in row
                else f"{row['repo_gflop_s']:.0f} GFLOP/s"
            )
            + compiled
            + (
                f", NCHW {row['nchw_stages']}: {row['layout_speedup']}x"
                if row["nchw_stages"]
                else ""
            )
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
