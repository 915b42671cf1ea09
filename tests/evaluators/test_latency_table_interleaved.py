"""The latency table's interleaved protocol: units timed against a reference network, stored as ratio × the
reference's calibrated latency, so a change of the machine's speed between two units cancels (issue: latency you
can trust on a noisy machine). The 'machine' here is a set of modules that sleep a known time scaled by a shared
slow-down factor the test sets; the expected ratios are the sleeps the test chose, not anything the code computes."""
from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

import evaluators.latency_table as ltab
from evaluators.latency_cache import LatencyCache
from evaluators.latency_protocol import ReferenceLatency
from evaluators.latency_table import LatencyPredictor, LatencyTable, calibrate_reference, timed


class Machine:
    slow = 1.0


class Sleep(nn.Module):
    """A 'network' whose pass takes ``ms`` × the machine's slow-down."""

    def __init__(self, ms: float, machine: Machine) -> None:
        super().__init__()
        self.ms, self.machine = ms, machine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.ms * self.machine.slow / 1000)
        return x


def _table(protocol: str, **kw) -> LatencyTable:
    extra = {"input_size": 8, "reference_ms": 4.0} if protocol == "interleaved" else {}
    return LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=1, repeats=5, rounds=1,
                        protocol=protocol, **{**extra, **kw})


def test_interleaved_units_keep_their_ratio_when_the_machine_slows_down_between_them(monkeypatch):
    machine = Machine()
    reference = Sleep(2.0, machine)
    monkeypatch.setattr(ltab, "reference_model", lambda table: reference)
    got = {}
    for protocol in ("plain", "interleaved"):
        table = _table(protocol)
        machine.slow = 1.0
        a = timed(Sleep(1.0, machine), (1, 2), table=table)
        machine.slow = 2.0  # the machine halves its speed between the two units (foreign load, frequency)
        b = timed(Sleep(3.0, machine), (1, 2), table=table)
        got[protocol] = (a, b)
    a, b = got["interleaved"]
    assert b / a == pytest.approx(3.0, rel=0.1)  # the true ratio of the two units
    assert a == pytest.approx(1.0 / 2.0 * 4.0, rel=0.1)  # ratio to the 2 ms reference × its calibrated 4 ms
    a, b = got["plain"]
    assert b / a == pytest.approx(6.0, rel=0.15)  # absolute medians keep the slow-down: the old protocol's error


def test_reference_is_calibrated_once_per_machine_and_shared_with_the_measured_evaluator(tmp_path, monkeypatch):
    from evaluators.latency import LatencyEvaluator

    machine = Machine()
    reference = Sleep(3.0, machine)
    monkeypatch.setattr(ltab, "reference_model", lambda table: reference)
    store = LatencyCache(tmp_path / "ref.sqlite")
    table = _table("interleaved", reference_ms=None)
    ms = calibrate_reference(table, ReferenceLatency([store]))
    assert ms == pytest.approx(3.0, rel=0.15) and table.reference_ms == ms
    machine.slow = 2.0  # a later table on this machine scales by the stored number, not a new calibration
    again = _table("interleaved", reference_ms=None)
    assert calibrate_reference(again, ReferenceLatency([store])) == ms
    ev = LatencyEvaluator(num_classes=10, in_chans=1, device="cpu", batch_sizes=(1,), threads=1)
    assert store.get_reference(ev.reference_key(batch=1, input_size=8)) == ms  # the search's key


def test_interleaved_table_round_trips_and_rejects_a_missing_reference(tmp_path):
    table = _table("interleaved", entries={"stem x": {"ms": 0.5, "out": 8}}, scale=1.1, overhead_ms=0.1)
    back = LatencyTable.load(table.save(tmp_path / "t.yaml"))
    assert (back.protocol, back.input_size, back.reference_ms, back.ci, back.max_seconds) == \
        ("interleaved", 8, 4.0, 0.02, 2.0)
    assert LatencyTable.load(_table("plain").save(tmp_path / "p.yaml")).protocol == "plain"
    data = table.to_dict()
    with pytest.raises(ValueError, match="reference_ms > 0"):
        LatencyTable.from_dict({**data, "reference_ms": None})
    with pytest.raises(ValueError, match="protocol: must be one of plain, interleaved"):
        LatencyTable.from_dict({**data, "protocol": "fast"})
    with pytest.raises(ValueError, match="input_size"):
        LatencyTable.from_dict({**data, "input_size": None})
    old = {k: v for k, v in _table("plain").to_dict().items() if k != "protocol"}  # tables written before
    assert LatencyTable.from_dict(old).protocol == "plain"


def test_interleaved_units_of_a_real_network_are_in_reference_units():
    """Real modules and the real reference (wrn-16-1): with reference_ms = 1 every number is a ratio to it. wrn-10-1
    has one block per stage where the reference has two, so it is measured faster than the reference, and its
    units (timed alone, on the fly) sum to about its end-to-end number."""
    from space import build_model, wrn

    arch = wrn(10, 1, input_size=8)
    table = _table("interleaved", reference_ms=1.0)
    units = LatencyPredictor(table).units_ms(arch)
    model = build_model(arch, num_classes=10, in_chans=1)
    whole = timed(model, (1, 1, 8, 8), table=table)
    assert 0.2 < whole < 1.0
    assert whole / 3 < units < 3 * whole, (units, whole)
