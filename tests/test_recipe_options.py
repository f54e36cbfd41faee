"""Recipe options, each off by default: EMA, norm weight decay, MixUp/CutMix, multi-view TTA."""

from pathlib import Path

import pytest
import torch

import evaluation.report
from data.mix import BatchMixer, cutmix_box
from evaluation.inference import shifted, views
from models import create_model
from tests.conftest import tiny_config
from tests.test_reliability import EXACT, assert_same_training_state
from training.optimizer import parameter_groups
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.config import load_config

ALL_OPTIONS = (
    "train.ema_decay=0.9",
    "optim.norm_weight_decay=0",
    "train.mixup_alpha=0.4",
    "train.cutmix_alpha=1.0",
    "data.crop_padding_mode=reflect",
    "data.cutout=8",
    "schedule.name=onecycle",
    "schedule.warmup_epochs=0",
    "schedule.peak_fraction=0.2",
    "schedule.start_ratio=0.2",
)


def test_every_option_is_off_by_default() -> None:
    for name in ("baseline", "optimized", "best", "smoke"):
        cfg = load_config(name)
        assert cfg.train.ema_decay is None and cfg.optim.norm_weight_decay is None
        assert cfg.train.mixup_alpha == 0 and cfg.train.cutmix_alpha == 0


def test_resume_is_bitwise_exact_with_every_option_on(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=3", *EXACT, *ALL_OPTIONS)
    fit(cfg, tmp_path / "straight")
    fit(cfg, tmp_path / "split", stop_after_epochs=1)
    fit(cfg, tmp_path / "split", load_checkpoint(tmp_path / "split" / "last.pt"))
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "last.pt")
    assert_same_training_state(straight, split)
    for name, tensor in straight["ema"].items():
        assert torch.equal(tensor, split["ema"][name]), name


def test_ema_is_validated_kept_in_best_pt_and_evaluated(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", "train.ema_decay=0.9")
    fit(cfg, tmp_path / "run")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    row = best["metrics"]
    assert {"val_loss", "raw_val_loss", "raw_val_acc"} <= row.keys()
    assert row["val_loss"] != row["raw_val_loss"]  # two models were scored
    assert int(best["ema"]["n_averaged"]) == best["step"]
    averaged = best["ema"]["module.fc.weight"]
    assert not torch.equal(averaged, best["model"]["fc.weight"])
    report = evaluation.report.evaluate_checkpoint(
        best, tmp_path / "run" / "best.pt", out_dir=tmp_path / "eval"
    )
    assert report["loss"] == pytest.approx(row["val_loss"], rel=1e-5)  # the average is scored


def test_norm_weight_decay_groups_batchnorm_and_biases() -> None:
    model = create_model(num_classes=10)
    cfg = load_config("optimized", ["optim.norm_weight_decay=0"]).optim
    other, norm = parameter_groups(model, cfg)
    assert other["weight_decay"] == 1e-4 and norm["weight_decay"] == 0
    one_dim = {id(p) for p in model.parameters() if p.ndim == 1}  # BN weights/biases, fc.bias
    assert {id(p) for p in norm["params"]} == one_dim
    assert len(other["params"]) + len(norm["params"]) == len(list(model.parameters()))
    (single,) = parameter_groups(model, load_config("optimized").optim)
    assert single["weight_decay"] == 1e-4 and len(single["params"]) == len(other["params"]) + len(
        norm["params"]
    )


def test_mixup_blends_the_batch_with_one_weight() -> None:
    inputs, labels = torch.randn(16, 3, 8, 8), torch.arange(16)
    mixed = BatchMixer(mixup_alpha=0.4)(inputs, labels, torch.Generator().manual_seed(0))
    perm = mixed.other_labels  # labels are positions, so they name the partner image
    assert 0 < mixed.lam < 1
    assert torch.allclose(mixed.inputs, mixed.lam * inputs + (1 - mixed.lam) * inputs[perm])
    again = BatchMixer(mixup_alpha=0.4)(inputs, labels, torch.Generator().manual_seed(0))
    assert torch.equal(again.inputs, mixed.inputs) and again.lam == mixed.lam


def test_cutmix_pastes_one_box_whose_area_is_the_weight() -> None:
    inputs, labels = torch.randn(16, 3, 32, 32), torch.arange(16)
    mixed = BatchMixer(cutmix_alpha=1.0)(inputs, labels, torch.Generator().manual_seed(3))
    pasted = (mixed.inputs != inputs).any(1)  # (N, H, W): where another image shows
    moved = pasted[mixed.other_labels != labels]
    area = moved.float().mean().item()
    assert area == pytest.approx(1 - mixed.lam, abs=1e-6)
    top, bottom, left, right = cutmix_box(32, 32, 0.75, torch.Generator().manual_seed(1))
    assert 0 <= top < bottom <= 32 and 0 <= left < right <= 32


def test_with_both_each_batch_takes_one_of_them() -> None:
    mixer, gen = BatchMixer(mixup_alpha=0.4, cutmix_alpha=1.0), torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(8, 3, 16, 16), torch.arange(8)
    kinds = set()
    for _ in range(20):
        mixed = mixer(inputs, labels, gen)
        untouched = (mixed.inputs == inputs).all(1)  # cutmix leaves pixels outside the box
        kinds.add("cutmix" if untouched.any() else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_flip_shift_views_and_weights() -> None:
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    down_right = shifted(images, 1, 1)
    assert torch.equal(down_right[..., 1:, 1:], images[..., :-1, :-1])
    assert torch.equal(down_right[..., 0, 1:], images[..., 1, :-1])  # reflected border
    weighted = views(images, "flip-shift")
    assert len(weighted) == 6 and sum(w for w, _ in weighted) == pytest.approx(1.0)
    assert [w for w, _ in views(images, "flip")] == [0.5, 0.5]
    assert len(views(images, "none")) == 1
