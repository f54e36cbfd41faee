import itertools
import math

import pytest

from training.early_stopping import EarlyStopping
from training.schedule import LrSchedule
from utils.config import ScheduleConfig


def test_early_stopping_stops_after_patience_without_improvement() -> None:
    stopper = EarlyStopping(patience=3, min_delta=0.01)
    losses = [1.0, 0.8, 0.795, 0.81, 0.79, 0.9]  # 0.795 and 0.79 are within min_delta of 0.8
    decisions = [stopper.update(loss) for loss in losses]
    assert decisions == [False, False, False, False, True, True]
    assert stopper.best == 0.8


def test_early_stopping_resets_on_improvement_and_round_trips() -> None:
    stopper = EarlyStopping(patience=2)
    assert not stopper.update(1.0) and not stopper.update(1.1)
    assert not stopper.update(0.5)  # improvement resets the counter
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(stopper.state_dict())
    assert not restored.update(0.6) and restored.update(0.7)


def test_disabled_early_stopping_never_stops() -> None:
    stopper = EarlyStopping(patience=1, enabled=False)
    assert not any(stopper.update(loss) for loss in [1.0, 2.0, 3.0, 4.0])


def test_nan_loss_is_never_an_improvement() -> None:
    stopper = EarlyStopping(patience=2)
    stopper.update(1.0)
    assert not stopper.update(math.nan) and stopper.update(math.nan)
    assert stopper.best == 1.0


def lrs(name: str, epochs: int = 10, steps: int = 10, **kw: float) -> list[float]:
    schedule = LrSchedule(ScheduleConfig(name=name, **kw), 0.1, epochs, steps)
    return [schedule.lr(s) for s in range(epochs * steps)]


def test_warmup_is_linear_then_schedule() -> None:
    values = lrs("constant", warmup_epochs=1)
    assert values[:10] == pytest.approx([0.01 * (i + 1) for i in range(10)])
    assert values[10:] == pytest.approx([0.1] * 90)


def test_cosine_decays_monotonically_to_floor() -> None:
    values = lrs("cosine", min_lr_ratio=0.1)
    assert values[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.01, abs=1e-4)


def test_step_schedule_multiplies_by_gamma() -> None:
    values = lrs("step", step_epochs=4, gamma=0.5)
    assert values[39] == pytest.approx(0.1) and values[40] == pytest.approx(0.05)
    assert values[80] == pytest.approx(0.025)


def test_onecycle_rises_then_falls() -> None:
    values = lrs("onecycle")
    peak = values.index(max(values))
    assert values[0] < 0.02 and max(values) == pytest.approx(0.1, rel=0.02)
    assert 0.25 * len(values) < peak < 0.35 * len(values)
    assert values[-1] < 0.005


def test_onecycle_peak_position_and_start_are_keys() -> None:
    values = lrs("onecycle", peak_fraction=0.2, start_ratio=0.2)
    assert values[0] == pytest.approx(0.02)
    assert values.index(max(values)) == 20  # 20% of 100 steps
    assert all(a < b for a, b in itertools.pairwise(values[:21]))  # linear rise
    assert all(a > b for a, b in itertools.pairwise(values[20:]))  # linear fall
    assert values[60] == pytest.approx(0.1 * (1 - 0.5), rel=1e-6)  # halfway down the fall
