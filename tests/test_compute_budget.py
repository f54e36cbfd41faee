"""Training compute: the FLOPs of an image and of a run, the PFLOP budget, progressive resizing."""

import json
from pathlib import Path

import pytest
import torch

import data.augment
import data.loader
from evaluation.compare import compare_runs
from tests.conftest import tiny_config
from tests.test_reliability import EXACT, KilledError, assert_same_training_state
from training.compute import train_gflop_per_image
from training.schedule import SideSchedule
from training.trainer import fit
from utils.checkpoint import load_checkpoint
from utils.config import load_config
from utils.errors import ConfigError

CIFAR_STEM = {
    "arch": "resnet18",
    "num_classes": 10,
    "stem": "cifar",
    "dropout": 0.0,
    "zero_init_residual": False,
}
BUDGET = ("train.budget_pflop=0.002", "data.progressive_from=16", "data.cutout=0")
STEP_PFLOP = 48 * 3.33e-6  # the most a step of the tiny config costs: 48 images at 32 px


def test_an_image_costs_3_33_gflop_at_32_px_and_less_when_smaller() -> None:
    rng = torch.get_rng_state()
    full = train_gflop_per_image(CIFAR_STEM, 32)
    assert 3.2 < full < 3.4  # 3 x the 0.56 GMAC forward pass, x 2 FLOP per MAC
    assert train_gflop_per_image(CIFAR_STEM, 16) < train_gflop_per_image(CIFAR_STEM, 24) < full
    assert torch.equal(rng, torch.get_rng_state())  # counting draws no random numbers


def test_sides_grow_from_the_first_to_the_full_side_in_multiples_of_4() -> None:
    schedule = SideSchedule(32, total_steps=100, start_side=16, until=0.5)
    sides = [schedule.side(step) for step in range(100)]
    assert sides == sorted(sides) and set(sides) == {16, 20, 24, 28, 32}
    assert sides[0] == 16 and sides[49] < 32 and set(sides[50:]) == {32}
    assert SideSchedule(32, 100, None, 0.5).side(0) == 32


def test_a_pflop_budget_ends_on_the_last_step_it_buys(tmp_path: Path) -> None:
    cfg = tiny_config("best", tmp_path, *BUDGET)
    state = fit(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 0.002 - STEP_PFLOP < summary["train_pflop"] <= 0.002
    assert summary["train_pflop"] == state.history[-1]["train_pflop"]
    steps_per_epoch = 8  # 360 training images in batches of 48
    assert state.epoch > cfg.train.epochs  # the budget, not train.epochs, sets the length
    assert state.step % steps_per_epoch != 0  # it ends inside its last epoch
    assert state.history[-1]["lr"] < 0.1 * cfg.optim.lr  # the schedule ends with the budget
    # smaller sides early: cheaper than the same steps at the full side
    assert summary["train_pflop"] < state.step * STEP_PFLOP * 0.9


def test_resume_mid_resize_is_bitwise_and_evaluation_runs_at_the_full_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sides: dict[bool, set[int]] = {True: set(), False: set()}  # augmenting (training) or not
    original = data.augment.BatchTransform.__call__

    def recording(self, images, gen=None, side=None):
        out = original(self, images, gen, side)
        sides[self.augments].add(out.shape[-1])
        return out

    monkeypatch.setattr(data.augment.BatchTransform, "__call__", recording)
    cfg = tiny_config("best", tmp_path, *BUDGET, *EXACT, "data.progressive_until=0.9")
    fit(cfg, tmp_path / "straight")
    assert sides[True] == {16, 20, 24, 28, 32} and sides[False] == {32}
    fit(cfg, tmp_path / "split", stop_after_epochs=1)  # stops at side 20
    fit(cfg, tmp_path / "split", load_checkpoint(tmp_path / "split" / "last.pt"))
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert_same_training_state(straight, load_checkpoint(tmp_path / "split" / "last.pt"))
    assert straight["input_side"] == 32  # what evaluation and prediction resize to


def test_one_budget_a_run_and_a_first_side_below_the_full_one() -> None:
    with pytest.raises(ConfigError, match=r"train\.budget_pflop: a run has one budget"):
        load_config("best.yaml", ["train.budget_pflop=1", "train.time_budget_minutes=5"])


def test_a_first_side_not_below_the_full_side_is_one_error(tmp_path: Path) -> None:
    cfg = tiny_config("best", tmp_path, "data.progressive_from=32")
    with pytest.raises(
        ConfigError, match=r"data\.progressive_from: 32 is not below the input side"
    ):
        fit(cfg, tmp_path / "run")


def test_compare_shows_training_pflop_and_plots_accuracy_against_it(tmp_path: Path) -> None:
    record = Path(__file__).resolve().parent.parent / "docs/results/runs/budget-075-s0"
    result = compare_runs([record], tmp_path)
    assert "training PFLOP" in result["table"] and "| 0.749 |" in result["table"]
    assert tmp_path / "results_compute.png" in result["plots"]


def test_a_budget_run_killed_in_its_last_epoch_resumes_to_the_same_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config("best", tmp_path, *BUDGET, *EXACT, "train.save_every_minutes=1e-9")
    straight = fit(cfg, tmp_path / "straight")
    last_epoch, original = straight.epoch - 1, data.loader.InMemoryLoader.batches

    def killed_at_step_3_of_the_last_epoch(self, epoch: int = 0, start_batch: int = 0):
        for i, batch in enumerate(original(self, epoch, start_batch)):
            if self.shuffle and epoch == last_epoch and start_batch + i == 2:
                raise KilledError
            yield batch

    monkeypatch.setattr(data.loader.InMemoryLoader, "batches", killed_at_step_3_of_the_last_epoch)
    with pytest.raises(KilledError):
        fit(cfg, tmp_path / "killed")
    monkeypatch.undo()
    resumed = fit(cfg, tmp_path / "killed", load_checkpoint(tmp_path / "killed" / "last.pt"))
    assert resumed.step == straight.step  # the resumed part stops where the budget does
    assert_same_training_state(
        load_checkpoint(tmp_path / "straight" / "last.pt"),
        load_checkpoint(tmp_path / "killed" / "last.pt"),
    )
