"""The benchmark's matmul peak is a sustained median over sizes, not one best product."""

import pytest
import torch

import benchmarks.peak as peak_module


def test_peak_is_the_best_size_of_sustained_medians(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake(n: int, dtype: torch.dtype) -> float:
        calls.append(n)
        return {1024: 700.0, 2048: 650.0, 3072: 600.0}[n]

    monkeypatch.setattr(peak_module, "sustained_gflops", fake)
    peak_module.matmul_peak.cache_clear()
    peak = peak_module.matmul_peak("fp32")
    peak_module.matmul_peak.cache_clear()
    assert calls == [1024, 2048, 3072]
    assert peak == {
        "gflop_s": 700.0,
        "size": 1024,
        "per_size": {1024: 700.0, 2048: 650.0, 3072: 600.0},
    }


def test_sustained_rate_times_a_loop_of_the_given_length(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]

    def tick() -> float:
        now[0] += 0.05  # each clock read 0.05 s later: a product takes 0.05 s
        return now[0]

    monkeypatch.setattr(peak_module.time, "perf_counter", tick)
    rate = peak_module.sustained_gflops(64, torch.float32, min_seconds=1.0)
    assert rate == pytest.approx(2 * 64**3 / 0.05 / 1e9)
