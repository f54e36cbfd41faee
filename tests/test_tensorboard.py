"""TensorBoard events: the expected scalars, hyperparameters, and no duplicate steps on resume."""

from pathlib import Path

import pytest

import training.trainer
from tests.conftest import tiny_config
from training.trainer import fit
from utils.checkpoint import load_checkpoint

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


class KilledError(Exception):
    """Stands in for kill -9 after the last save: the events logged since then stay behind."""


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


def test_a_run_logs_step_and_epoch_scalars_and_its_hparams(tmp_path: Path) -> None:
    fit(tiny_config("optimized", tmp_path, "train.epochs=2"), tmp_path / "run")
    logged = scalars(tmp_path / "run")
    steps = load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert [s for s, _ in logged["train/step_loss"]] == list(range(1, steps + 1))
    assert len(logged["train/lr"]) == steps
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "epoch/epoch_time_s"):
        assert [s for s, _ in logged[tag]] == [steps // 2, steps], tag
    history = load_checkpoint(tmp_path / "run" / "last.pt")["run_state"]["history"]
    assert logged["val/loss"][-1][1] == pytest.approx(history[-1]["val_loss"], rel=1e-6)
    assert any((tmp_path / "run" / "tensorboard" / "hparams").iterdir())


def test_off_writes_nothing(tmp_path: Path) -> None:
    fit(tiny_config("smoke", tmp_path, "train.epochs=1", "train.tensorboard=false"), tmp_path / "r")
    assert not (tmp_path / "r" / "tensorboard").exists()


def test_a_resumed_run_continues_the_curves_without_duplicate_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config("optimized", tmp_path, "train.epochs=3")
    fit(cfg, tmp_path / "run", stop_after_epochs=1)
    real_finish = training.trainer.finish_epoch

    def killed_after_logging_epoch_2(run, state, row):  # its steps were logged, not saved
        if row["epoch"] == 2:
            raise KilledError
        real_finish(run, state, row)

    monkeypatch.setattr(training.trainer, "finish_epoch", killed_after_logging_epoch_2)
    with pytest.raises(KilledError):
        fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    monkeypatch.undo()
    fit(cfg, tmp_path / "run", load_checkpoint(tmp_path / "run" / "last.pt"))
    steps = load_checkpoint(tmp_path / "run" / "last.pt")["step"]
    logged = scalars(tmp_path / "run")
    assert [s for s, _ in logged["train/step_loss"]] == list(range(1, steps + 1))
    assert [s for s, _ in logged["val/loss"]] == [steps // 3, 2 * steps // 3, steps]
