"""Measured CPU latency: sane statistics, ordering of models, thread count restored, device checks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import space
from evaluators import LatencyEvaluator, measure_latency


class _ThreadProbe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 2)
        self.seen: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.add(torch.get_num_threads())
        return self.lin(x)


def test_statistics_and_restores_threads_and_mode():
    torch.set_num_threads(2)
    model = _ThreadProbe().train()
    out = measure_latency(model, input_shape=(3, 4), warmup=2, repeats=7, threads=1)
    assert model.seen == {1} and torch.get_num_threads() == 2 and model.training
    for key in ("median_ms", "mean_ms", "p25_ms", "p75_ms", "iqr_ms", "std_ms"):
        assert math.isfinite(out[key]) and out[key] >= 0
    assert out["median_ms"] > 0 and out["p25_ms"] <= out["median_ms"] <= out["p75_ms"]
    assert out["iqr_ms"] == pytest.approx(out["p75_ms"] - out["p25_ms"])
    assert (out["repeats"], out["device"], out["batch"]) == (7, "cpu", 3)


def test_bigger_model_is_slower():
    ev = LatencyEvaluator(num_classes=10, in_chans=1, batch_sizes=(8,), warmup=1, repeats=3, threads=1)
    big = ev.evaluate(space.wrn(16, 8, input_size=16))  # ~390 M MACs per image
    small = ev.evaluate(space.wrn(10, 1, input_size=16))  # ~3 M MACs per image
    assert big["latency_ms"] > 3 * small["latency_ms"] > 0


def test_evaluator_keys():
    ev = LatencyEvaluator(num_classes=10, in_chans=1, batch_sizes=(2, 1), warmup=0, repeats=2)
    out = ev.evaluate(space.wrn(10, 1, input_size=16))
    assert set(out) == {"latency_ms", "latency_ms_b2", "latency_iqr_ms_b2", "latency_ms_b1", "latency_iqr_ms_b1"}
    assert out["latency_ms"] == out["latency_ms_b2"] and not ev.cheap and ev.name == "latency"
    assert all(math.isfinite(v) and v >= 0 for v in out.values())


@pytest.mark.parametrize("device", ["gpu", "cpu:0", "cuda:x", ""])
def test_malformed_device(device):
    with pytest.raises(ValueError, match="latency.device"):
        measure_latency(nn.Linear(2, 2), input_shape=(1, 2), device=device)


def test_cuda_device_checked():
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="latency.device"):
            LatencyEvaluator(num_classes=10, in_chans=3, device=f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match="latency.device.*CUDA is unavailable"):
            LatencyEvaluator(num_classes=10, in_chans=3, device="cuda")


def test_bad_arguments():
    with pytest.raises(ValueError, match="latency.repeats"):
        measure_latency(nn.Linear(2, 2), input_shape=(1, 2), repeats=0)
    with pytest.raises(ValueError, match="latency.input_shape"):
        measure_latency(nn.Linear(2, 2), input_shape=(0, 2))
    with pytest.raises(ValueError, match="latency.batch_sizes"):
        LatencyEvaluator(num_classes=10, in_chans=3, batch_sizes=())
