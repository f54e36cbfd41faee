"""Precision choice: auto keeps bf16 on CPU only where it measurably pays off."""

import json
from pathlib import Path

import pytest
import torch

import training.autotune
import utils.device
import utils.hardware
from models import create_model
from tests.conftest import tiny_config
from training.autotune import faster_precision, time_training_step, wants_probe
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
    # fp32 is chosen first: on CPUs without native bf16, training in bf16 is slow
    calls = []

    def pretend_fp32_wins(step_seconds: object) -> str:
        calls.append(1)
        return "fp32"

    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr(training.autotune, "faster_precision", pretend_fp32_wins)
    cfg = tiny_config("optimized", tmp_path, "train.epochs=2", "train.precision=auto")
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["fast_path"]["precision"] == "fp32"
    monkeypatch.setattr(training.autotune, "faster_precision", lambda _: calls.append(1) or "bf16")
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    assert len(calls) == 1  # the resumed half did not choose again
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["precision"] == "fp32"


def test_bf16_without_native_support_is_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: False)
    warning = utils.device.emulated_bf16_warning("bf16", cpu)
    assert warning is not None and "train.precision=auto or fp32" in warning
    assert utils.device.emulated_bf16_warning("fp32", cpu) is None
    assert utils.device.emulated_bf16_warning("bf16", torch.device("cuda")) is None
    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: True)
    assert utils.device.emulated_bf16_warning("bf16", cpu) is None


def test_the_run_header_warns_when_bf16_is_emulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(utils.device, "cpu_has_fast_bf16", lambda: False)
    cfg = tiny_config("optimized", tmp_path, "train.precision=bf16")
    fit(cfg, tmp_path / "run", stop_after_epochs=0)  # the header only: emulated bf16 is slow
    assert "emulated and slower than fp32" in capsys.readouterr().err


def test_hardware_line_tells_cpus_of_one_name_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(utils.hardware, "cpu_has_fast_bf16", lambda: False)
    plain = utils.hardware.describe_hardware(cpu)
    assert f"cores, {torch.backends.cpu.get_cpu_capability()})" in plain
    monkeypatch.setattr(utils.hardware, "cpu_has_fast_bf16", lambda: True)
    assert utils.hardware.describe_hardware(cpu) != plain
    assert "native bf16" in utils.hardware.describe_hardware(cpu)
