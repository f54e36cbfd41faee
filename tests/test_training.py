from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from PIL import Image

import evaluation.report
from data import create_data
from data.augment import BatchTransform
from evaluation.inference import predict
from models import create_model, model_args
from tests.conftest import record_fed_sides, tiny_config
from training.early_stopping import EarlyStopping
from training.run_state import RunState, make_checkpoint, restore
from training.trainer import build_optimizer, fit
from utils.checkpoint import REQUIRED_KEYS, load_checkpoint, save_checkpoint
from utils.device import FastPath
from utils.run_log import read_history


def test_accuracy_rises_well_above_chance(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "data.synthetic_samples=800", "train.epochs=4")
    state = fit(cfg, tmp_path / "run")
    assert state.best_val_acc > 0.6, f"10 classes, chance 0.1; got {state.best_val_acc}"
    history = read_history(tmp_path / "run")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_checkpoint_describes_itself_and_rebuilds_the_model(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=1")
    fit(cfg, tmp_path / "run")
    raw = torch.load(tmp_path / "run" / "best.pt", weights_only=True)  # no allow-listing needed
    assert all(key in raw for key in REQUIRED_KEYS)
    for key in ("optimizer", "early_stopping", "rng", "epoch", "metrics", "val_indices"):
        assert key in raw
    assert raw["model_args"]["dropout"] == 0.5 and raw["config"]["optim"]["weight_decay"] == 1e-4
    model = create_model(**raw["model_args"])
    model.load_state_dict(raw["model"])
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("epoch,train_loss")


def test_loss_scale_survives_a_checkpoint(tmp_path: Path) -> None:
    """fp16 training keeps its loss scale across a resume (the scaler itself is CUDA-only in
    training; its state is plain data either way)."""
    cfg = tiny_config("optimized", tmp_path)
    data = create_data(cfg.data, 0, torch.device("cpu"))
    model = create_model(**model_args(cfg.model, len(data.class_names)))
    optimizer = build_optimizer(model, cfg.optim, cfg.optim.lr)
    stopper = EarlyStopping(**vars(cfg.early_stopping))
    scaler = torch.amp.GradScaler("cpu", init_scale=64.0, growth_interval=7)
    parts = (cfg, data, model, optimizer, stopper, RunState())
    save_checkpoint(make_checkpoint(*parts, FastPath("fp32"), scaler), tmp_path / "last.pt")
    fresh = torch.amp.GradScaler("cpu")
    restore(load_checkpoint(tmp_path / "last.pt"), *parts[2:5], fresh)
    assert fresh.get_scale() == 64.0
    assert fresh.state_dict() == scaler.state_dict()


def test_image_folder_is_evaluated_at_the_training_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fit(tiny_config("baseline", tmp_path, "train.epochs=1"), tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint["input_side"] == 32  # synthetic images' native side
    for i in range(10):
        (tmp_path / "imgs" / f"class_{i}").mkdir(parents=True)
        Image.new("RGB", (48, 48), (20 * i, 0, 0)).save(tmp_path / "imgs" / f"class_{i}" / "0.png")
    sides = record_fed_sides(monkeypatch)
    report = evaluation.report.evaluate_checkpoint(
        checkpoint,
        tmp_path / "run" / "best.pt",
        image_folder=tmp_path / "imgs",
        out_dir=tmp_path / "eval",
    )
    assert sides == [32] and report["num_samples"] == 10


def test_flip_tta_averages_each_image_with_its_mirror() -> None:
    torch.manual_seed(0)
    model = create_model(num_classes=4, stem="cifar")
    transform = BatchTransform([0.5] * 3, [0.25] * 3)
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    labels = torch.zeros(6, dtype=torch.int64)

    def logits(batch: torch.Tensor, flip_tta: bool = False) -> torch.Tensor:
        batches = [(batch, labels)]
        (out, _), *_ = predict(
            model,
            batches,
            transform,
            nullcontext,
            progress=False,
            tta="flip" if flip_tta else "none",
        )
        return out

    averaged = (logits(images).softmax(1) + logits(images.flip(3)).softmax(1)) / 2
    assert torch.allclose(logits(images, flip_tta=True).softmax(1), averaged, atol=1e-6)
    assert not torch.allclose(logits(images, flip_tta=True), logits(images), atol=1e-3)
    # an image that is its own mirror is classified as without augmentation
    symmetric = torch.cat([images[..., :8], images[..., :8].flip(3)], dim=3)
    assert torch.allclose(
        logits(symmetric, True).softmax(1), logits(symmetric).softmax(1), atol=1e-6
    )


def as_format_2(checkpoint: dict) -> dict:
    """A checkpoint as the code before format 3 wrote it: precision and NCHW stages in
    ``run_state``, the input side as ``input_size``, no ``fast_path`` entry."""
    old = dict(checkpoint, format_version=2, run_state=dict(checkpoint["run_state"]))
    fast_path = old.pop("fast_path")
    old["run_state"]["precision"] = fast_path["precision"]
    old["run_state"]["nchw_stages"] = fast_path["nchw_stages"]
    old["input_size"] = old.pop("input_side")
    return old


def test_a_format_2_checkpoint_still_evaluates_and_resumes(tmp_path: Path) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", "train.precision=fp32")
    fit(cfg, tmp_path / "new", stop_after_epochs=1)
    current = load_checkpoint(tmp_path / "new" / "last.pt")
    (tmp_path / "old").mkdir()
    save_checkpoint(as_format_2(current), tmp_path / "old" / "last.pt")
    loaded = load_checkpoint(tmp_path / "old" / "last.pt")
    assert loaded["fast_path"] == current["fast_path"] and loaded["input_side"] == 32
    assert "precision" not in loaded["run_state"] and loaded["format_version"] == 3
    scored = evaluation.report.evaluate_checkpoint(
        loaded, tmp_path / "old" / "last.pt", out_dir=tmp_path / "eval"
    )
    assert scored["loss"] == pytest.approx(current["metrics"]["val_loss"], rel=1e-5)
    fit(cfg, tmp_path / "old", loaded)
    fit(cfg, tmp_path / "new", current)
    old_end, new_end = (load_checkpoint(tmp_path / r / "last.pt") for r in ("old", "new"))
    assert old_end["epoch"] == new_end["epoch"] == 2
    for name, weight in new_end["model"].items():
        assert torch.equal(old_end["model"][name], weight), name
