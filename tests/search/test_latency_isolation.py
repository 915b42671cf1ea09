"""Latency during a search: measurements never overlap each other or a gated training step, results are
cached across processes, racing trials measure an architecture once, and predicted latency is a cheap
hard constraint checked before any training."""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import space
from evaluators import latency_service
from evaluators.latency_gate import MeasureGate
from evaluators.latency_service import LatencyService
from search.config import parse_config

ROOT = Path(__file__).resolve().parents[2]


def _overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_concurrent_measurements_never_overlap(tmp_path):
    stamps: list[tuple[float, float]] = []

    def measurer() -> None:
        gate = MeasureGate(tmp_path / "cpu.gate")  # own instance, own file descriptors: as another process
        for _ in range(4):
            with gate.measuring():
                start = time.perf_counter()
                time.sleep(0.02)
                stamps.append((start, time.perf_counter()))

    threads = [threading.Thread(target=measurer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(stamps) == 12
    assert not any(_overlaps(a, b) for i, a in enumerate(stamps) for b in stamps[i + 1:])


class _Step(nn.Module):
    """A 'training step': ~10 ms of work, stamped from inside forward (after the gate's pre-hook)."""

    def __init__(self, stamps: list) -> None:
        super().__init__()
        self.stamps = stamps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        while time.perf_counter() - start < 0.01:
            x = x + 1
        self.stamps.append((start, time.perf_counter()))
        return x


def test_training_steps_pause_while_a_measurement_holds_the_gate(tmp_path):
    steps: list[tuple[float, float]] = []
    stop = threading.Event()

    def trainer() -> None:
        step = _Step(steps)
        with MeasureGate(tmp_path / "cpu.gate").training(top=(_Step,)):
            while not stop.is_set():
                step(torch.zeros(1))

    t = threading.Thread(target=trainer)
    t.start()
    while len(steps) < 3:
        time.sleep(0.005)
    with MeasureGate(tmp_path / "cpu.gate").measuring():
        start = time.perf_counter()
        time.sleep(0.15)  # trainers would complete ~15 steps in this time if not paused
        measured = (start, time.perf_counter())
    n_after = len(steps)
    while len(steps) < n_after + 3:
        time.sleep(0.005)
    stop.set()
    t.join(10)
    assert any(s[1] <= measured[0] for s in steps) and any(s[0] >= measured[1] for s in steps)
    assert not any(_overlaps(s, measured) for s in steps)


def test_measuring_inside_own_training_is_refused(tmp_path):
    gate = MeasureGate(tmp_path / "g.gate")
    with gate.training(top=(_Step,)):
        with pytest.raises(RuntimeError, match="own training"):
            with gate.measuring():
                pass
    with gate.measuring():  # and works again afterwards
        pass


def _latency_cfg(**overrides):
    return parse_config({"latency": {"batch_sizes": [1], **overrides}}).latency


@pytest.fixture
def fresh_memo():
    latency_service._MEMO.clear()
    yield
    latency_service._MEMO.clear()


def test_cache_hits_within_and_across_processes(tmp_path, fresh_memo):
    calls: list[str] = []

    def fake(arch, in_chans, num_classes):
        calls.append(arch.arch_id)
        return {"latency_ms": 1.25, "latency_ms_b1": 1.25, "latency_iqr_ms_b1": 0.01}

    cache = tmp_path / "run" / "latency_cache.sqlite"
    gate = MeasureGate(tmp_path / "g.gate")
    service = LatencyService(_latency_cfg(), cache_path=cache, gate=gate, measure=fake)
    arch = space.wrn(10, 1, input_size=16)
    assert service.evaluate(arch, in_chans=1, num_classes=10)["latency_ms"] == 1.25
    assert service.evaluate(arch, in_chans=1, num_classes=10)["latency_ms"] == 1.25
    assert calls == [arch.arch_id]
    latency_service._MEMO.clear()  # as a fresh trial process: only the SQLite file remembers
    again = LatencyService(_latency_cfg(), cache_path=cache, gate=gate, measure=fake)
    assert again.evaluate(arch, in_chans=1, num_classes=10)["latency_ms"] == 1.25 and len(calls) == 1
    other = LatencyService(_latency_cfg(batch_sizes=[4]), cache_path=cache, gate=gate, measure=fake)
    other.evaluate(arch, in_chans=1, num_classes=10)  # another batch size is another measurement
    other.evaluate(arch.replace(input_size=32), in_chans=1, num_classes=10)  # and another input size
    assert len(calls) == 3 and len(service.cache) == 3


@pytest.mark.slow
def test_cache_hit_in_a_real_second_process(tmp_path, fresh_memo):
    cache = tmp_path / "latency_cache.sqlite"
    service = LatencyService(_latency_cfg(), cache_path=cache, measure=lambda *a: {"latency_ms": 1.25})
    service.evaluate(space.wrn(10, 1, input_size=16), in_chans=1, num_classes=10)
    # a second process reads the same file and never measures (its measurer would exit non-zero)
    code = f"""
import space
from search.config import parse_config
from evaluators.latency_service import LatencyService
def boom(*a):
    raise SystemExit('measured although cached')
s = LatencyService(parse_config({{'latency': {{'batch_sizes': [1]}}}}).latency, cache_path={str(cache)!r}, measure=boom)
print(s.evaluate(space.wrn(10, 1, input_size=16), in_chans=1, num_classes=10)['latency_ms'])
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1.25"


def test_racing_trials_measure_an_architecture_once(tmp_path, fresh_memo):
    calls: list[float] = []

    def slow(arch, in_chans, num_classes):
        calls.append(time.perf_counter())
        time.sleep(0.1)
        return {"latency_ms": 2.0}

    arch = space.wrn(10, 1, input_size=16)
    results: list[float] = []

    def trial() -> None:
        service = LatencyService(_latency_cfg(), cache_path=tmp_path / "c.sqlite",
                                 gate=MeasureGate(tmp_path / "g.gate"), measure=slow)
        results.append(service.evaluate(arch, in_chans=1, num_classes=10)["latency_ms"])

    threads = [threading.Thread(target=trial) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [2.0, 2.0, 2.0] and len(calls) == 1


def test_service_survives_pickling_and_measures_for_real(tmp_path, fresh_memo):
    import pickle

    service = LatencyService(_latency_cfg(warmup=1, repeats=3), cache_path=tmp_path / "c.sqlite",
                             gate=MeasureGate(tmp_path / "g.gate"))
    clone = pickle.loads(pickle.dumps(service))
    out = clone.evaluate(space.wrn(10, 1, input_size=16), in_chans=1, num_classes=10)
    assert set(out) == {"latency_ms", "latency_ms_b1", "latency_iqr_ms_b1"} and out["latency_ms"] > 0
