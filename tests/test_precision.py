"""Precision choice: auto keeps bf16 on CPU only where it measurably pays off."""

import json
from pathlib import Path

import pytest
import torch

import training.setup
import utils.device
from models import create_model
from tests.conftest import tiny_config
from training.precision import faster_precision, time_training_step, wants_probe
from training.trainer import fit
from utils.checkpoint import load_checkpoint


@pytest.mark.parametrize(
    ("fp32_s", "bf16_s", "expected"),
    [(0.3, 0.1, "bf16"), (0.105, 0.1, "fp32"), (0.1, 0.12, "fp32")],
)
def test_bf16_kept_only_when_clearly_faster(fp32_s: float, bf16_s: float, expected: str) -> None:
    assert faster_precision({"fp32": fp32_s, "bf16": bf16_s}.__getitem__) == expected


def test_probe_only_for_auto_on_bf16_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: True)
    assert wants_probe("auto", cpu) and not wants_probe("fp32", cpu)
    assert not wants_probe("bf16", cpu) and not wants_probe("auto", torch.device("mps"))
    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: False)
    assert not wants_probe("auto", cpu)


def test_probe_leaves_the_random_stream_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    seconds = time_training_step(lambda: create_model(num_classes=10), 32, 4, True)("fp32")
    assert seconds > 0
    assert torch.equal(torch.rand(3), expected)


def test_choice_is_recorded_and_kept_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def pretend_bf16_wins(step_seconds: object) -> str:
        calls.append(1)
        return "bf16"

    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(training.setup, "faster_precision", pretend_bf16_wins)
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", "train.precision=auto")
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["precision"] == "bf16"
    monkeypatch.setattr(training.setup, "faster_precision", lambda _: "fp32")
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    assert len(calls) == 1  # the resumed half did not choose again
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["precision"] == "bf16"
