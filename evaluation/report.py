"""Evaluate a checkpoint on one split: metrics to JSON, plots to PNG, a summary to print.

Needs only the checkpoint (it holds the model's construction args, the class names, the
normalisation, the config and the validation indices) and the data.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from data import Loader, create_eval_loader
from data.augment import BatchTransform
from evaluation.calibration import calibrate_checkpoint, reliability_bins
from evaluation.html_report import write_run_report
from evaluation.inference import load_model, predict
from evaluation.metrics import classification_metrics
from evaluation.plots import (
    plot_confusion_matrix,
    plot_misclassified,
    plot_per_class_accuracy,
    plot_reliability_diagram,
    plot_training_curves,
)
from models import ResNet
from utils.checkpoint import steps_into_next_epoch
from utils.config import Config, config_from_dict
from utils.device import FastPath, recorded_fast_path, resolve_device
from utils.errors import DataError
from utils.run_log import eval_folder, read_history
from utils.safe_write import write_text_atomic

MISCLASSIFIED_SHOWN = 24


def run_predictions(
    model: ResNet,
    loader: Loader,
    transform: BatchTransform,
    fast_path: FastPath,
    device: torch.device,
    tta: str = "none",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, C) in float32 and labels (N,), on the CPU."""
    autocast = fast_path.autocast(device)
    batches = loader.batches()
    outputs = list(predict(model, batches, transform, autocast, len(loader), tta=tta))
    logits = torch.cat([logit for logit, _ in outputs]).cpu()
    labels = torch.cat([label for _, label in outputs]).cpu()
    return logits, labels


def write_plots(
    report: dict[str, Any],
    loader: Loader,
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    run_dir: Path,
    out_dir: Path,
) -> list[Path]:
    """All evaluation plots; training curves too when the run's metrics are beside it."""
    cm, per_class = report["confusion_matrix"], report["per_class"]
    paths = [
        plot_confusion_matrix(cm, class_names, out_dir / "confusion_matrix.png"),
        plot_per_class_accuracy(per_class, out_dir / "per_class_accuracy.png"),
        plot_reliability_diagram(
            reliability_bins(logits.softmax(1), labels),
            report["ece"],
            out_dir / "reliability_diagram.png",
        ),
    ]
    if len(labels) == len(loader.labels):  # positions are data set indices (nothing skipped)
        confidence, predicted = logits.softmax(1).max(1)
        wrong = (predicted != labels).nonzero().flatten()
        worst = wrong[confidence[wrong].argsort(descending=True)][:MISCLASSIFIED_SHOWN]
        grid = plot_misclassified(
            loader.images_at(worst),
            labels[worst].tolist(),
            predicted[worst].tolist(),
            confidence[worst].tolist(),
            class_names,
            out_dir / "misclassified.png",
        )
        paths.append(grid)
    history = read_history(run_dir)
    if history:
        paths.append(plot_training_curves(history, out_dir / "training_curves.png"))
    return paths


def eval_config(
    checkpoint: dict[str, Any], ckpt_path: Path, data_root: str | None, image_folder: Path | None
) -> Config:
    """The checkpoint's config, pointed at ``data_root``; for another folder of images, at the
    side the model was trained at when it trained at its data's native size."""
    cfg = config_from_dict(checkpoint["config"], f"{ckpt_path} (stored config)")
    if data_root:
        cfg = replace(cfg, data=replace(cfg.data, root=data_root))
    if image_folder is not None and cfg.data.image_size is None and "input_side" in checkpoint:
        cfg = replace(cfg, data=replace(cfg.data, image_size=checkpoint["input_side"]))
    return cfg


def check_classes(data_classes: list[str], expected: list[str]) -> None:
    """The data's classes must be the checkpoint's, in order, or labels would not line up."""
    if len(data_classes) != len(expected):
        raise DataError(
            f"the checkpoint has {len(expected)} classes but the data set has "
            f"{len(data_classes)}; evaluate on data with the classes {expected}"
        )
    if data_classes != expected:
        raise DataError(
            f"the data set's classes {data_classes} differ from the checkpoint's {expected}"
        )


def evaluate_checkpoint(
    checkpoint: dict[str, Any],
    ckpt_path: Path,
    split: str = "val",
    data_root: str | None = None,
    image_folder: Path | None = None,
    out_dir: Path | None = None,
    device_name: str = "auto",
    tta: str = "none",
    calibrate: bool = False,
) -> dict[str, Any]:
    """Score ``checkpoint`` on a split, write ``metrics.json``, plots and ``report.html`` (all of
    it on one page), return the report. A checkpoint with a ``temperature`` (a calibrated
    copy) is scored with its logits divided by it; ``calibrate`` fits a temperature on the
    validation split and writes such a copy beside the checkpoint.

    ``tta`` ("flip", "flip-shift") averages each image's prediction over several views of it
    (test-time augmentation, ``evaluation.inference.views``); the report says so, since the
    numbers then differ from training's.
    """
    cfg = eval_config(checkpoint, ckpt_path, data_root, image_folder)
    device = resolve_device(device_name, "--device")
    loader, data_classes = create_eval_loader(
        cfg.data,
        split,
        checkpoint.get("val_indices"),
        device,
        image_folder,
        checkpoint.get("data_fingerprint"),
        checkpoint.get("input_side"),
    )
    check_classes(data_classes, checkpoint["class_names"])
    norm = checkpoint["normalization"]
    # The same layout and precision as validation during training, so the numbers match.
    fast_path = recorded_fast_path(checkpoint).on(device, strict=False)
    transform = BatchTransform(
        norm["mean"],
        norm["std"],
        input_side=checkpoint.get("input_side"),
        channels_last=fast_path.channels_last,
    )
    model = load_model(checkpoint, device, fast_path)
    logits, labels = run_predictions(model, loader, transform, fast_path, device, tta)
    temperature = checkpoint.get("temperature", 1.0)
    logits = logits / temperature
    class_names = checkpoint["class_names"]
    report = {
        "checkpoint": str(ckpt_path),
        "split": "image-folder" if image_folder else split,
        "data": str(
            image_folder or ("synthetic" if cfg.data.dataset == "synthetic" else cfg.data.root)
        ),
        "epoch": checkpoint["epoch"],
        "steps_into_next_epoch": steps_into_next_epoch(checkpoint),
        "tta": tta,
        "flip_tta": tta == "flip",
        "temperature": temperature,
        **classification_metrics(logits, labels, class_names),
    }
    if calibrate:
        report["calibration"] = calibrate_checkpoint(
            checkpoint, ckpt_path, logits, labels, report["split"]
        )
    out_dir = out_dir or ckpt_path.parent / eval_folder(report["split"], tta)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "metrics.json", json.dumps(report, indent=2) + "\n")
    report["plots"] = [
        str(p)
        for p in write_plots(report, loader, logits, labels, class_names, ckpt_path.parent, out_dir)
    ]
    report["output_dir"] = str(out_dir)
    report["html_report"] = str(
        write_run_report(report, checkpoint["config"], ckpt_path.parent, out_dir)
    )
    return report


def format_report(report: dict[str, Any]) -> str:
    """A human-readable summary table of a report."""
    mode = report.get("tta", "flip" if report.get("flip_tta") else "none")
    tta = f" with {mode} test-time augmentation" if mode != "none" else ""
    steps = report["steps_into_next_epoch"]
    lines = [
        f"{report['split']} set{tta}: {report['num_samples']} images ({report['data']})",
        f"weights after epoch {report['epoch']}"
        + (f" and {steps} steps of the next" if steps else ""),
        f"accuracy {report['accuracy']:.4f} | loss {report['loss']:.4f} | "
        f"top-5 {report['top5_accuracy']:.4f} | macro F1 {report['macro_f1']:.4f}",
        f"{'class':<16}{'acc':>8}{'prec':>8}{'recall':>8}{'f1':>8}{'n':>7}",
    ]
    for name, s in report["per_class"].items():
        lines.append(
            f"{name[:15]:<16}{s['accuracy']:>8.4f}{s['precision']:>8.4f}{s['recall']:>8.4f}"
            f"{s['f1']:>8.4f}{s['support']:>7}"
        )
    lines.append(
        f"wrote {report['output_dir']}/metrics.json, {len(report['plots'])} plots and report.html"
    )
    if "calibration" in report:
        c = report["calibration"]
        lines.append(
            f"temperature {c['temperature']:.4f}: ECE {c['ece_before']:.4f} -> "
            f"{c['ece_after']:.4f}, NLL {c['nll_before']:.4f} -> {c['nll_after']:.4f}; "
            f"wrote {c['checkpoint']}"
        )
    return "\n".join(lines)
