from pathlib import Path

import torch

from models import create_model
from tests.conftest import tiny_config
from training.trainer import fit
from utils.checkpoint import REQUIRED_KEYS
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
