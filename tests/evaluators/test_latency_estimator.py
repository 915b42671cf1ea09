"""One latency estimator: a clock whose passes the test scripts shows that preempted passes are dropped and that
the measured evaluator and the per-unit table give the same number on the same passes; the interleaved protocol
recovers a ratio through machine drift and scales it by the stored reference latency."""
from __future__ import annotations

import statistics

import pytest
import torch

import evaluators.latency_timing as lt
from evaluators.latency import LatencyEvaluator, measure_latency
from evaluators.latency_cache import LatencyCache
from evaluators.latency_protocol import ReferenceLatency, interleave, median_ci
from evaluators.latency_table import LatencyTable, timed


class ScriptedClock:
    """``now()`` in seconds that only scripted passes advance; ``preemptions()`` rises on flagged passes."""

    def __init__(self) -> None:
        self.t = 0.0
        self.switches = 0

    def now(self) -> float:
        return self.t

    def preemptions(self) -> int:
        return self.switches

    def take(self, ms: float, preempted: bool) -> None:
        self.t += ms / 1e3
        self.switches += preempted


class Scripted(torch.nn.Module):
    """Each forward takes the next scripted ``(ms, preempted)`` from the clock (warm-up passes included)."""

    def __init__(self, clock: ScriptedClock, script: list[tuple[float, bool]]) -> None:
        super().__init__()
        self.clock, self.script, self.calls = clock, list(script), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.take(*self.script[self.calls])
        self.calls += 1
        return x


P = True  # preempted
WARM = [(50.0, False)]  # one warm-up pass: slow, never timed
ROUND = [(2.0, False), (9.0, P), (9.0, P), (2.2, False), (9.0, P), (2.1, False), (2.4, False), (2.3, False)]


@pytest.fixture
def clock(monkeypatch) -> ScriptedClock:
    c = ScriptedClock()
    monkeypatch.setattr(lt, "CLOCK", c)
    return c


def test_preempted_passes_are_dropped_and_replaced(clock):
    model = Scripted(clock, WARM + ROUND)
    out = measure_latency(model, input_shape=(1, 2), warmup=1, repeats=5)
    assert model.calls == 9  # 1 warm-up + 5 kept + 3 preempted, each replaced
    assert out["median_ms"] == pytest.approx(2.2)  # median of 2.0, 2.2, 2.1, 2.4, 2.3
    assert statistics.median([ms for ms, _ in ROUND]) == pytest.approx(2.35)  # what keeping them would give
    assert (out["timed"], out["preempted"], out["rounds"]) == (8, 3, 1)


def test_measured_mode_and_table_give_the_same_number_on_the_same_passes(clock):
    ev = LatencyEvaluator(num_classes=10, in_chans=1, warmup=1, repeats=5)
    measured = ev.measure(Scripted(clock, WARM + ROUND), input_size=2)
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=1, repeats=5, rounds=1)
    clock.t = 0.0  # the same passes from the same start: bit-identical times
    tabled = timed(Scripted(clock, WARM + ROUND), (1, 1, 2, 2), table=table)
    assert measured["latency_ms"] == tabled == pytest.approx(2.2)


def test_rounds_combine_by_their_median(clock):
    # three rounds: medians 2.2 (ROUND), 3.0, and 20 (a burst the preemption count did not catch)
    burst = [(20.0, False)] * 5
    steady = [(3.0, False)] * 5
    script = WARM + ROUND + WARM + steady + WARM + burst
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=1, repeats=5, rounds=3)
    assert timed(Scripted(clock, script), (1, 2), table=table) == pytest.approx(3.0)
    out = measure_latency(Scripted(clock, script), input_shape=(1, 2), warmup=1, repeats=5, rounds=3)
    assert out["median_ms"] == pytest.approx(3.0)


def test_a_round_of_only_preempted_passes_keeps_them(clock):
    model = Scripted(clock, [(4.0, P)] * 40)
    assert measure_latency(model, input_shape=(1, 2), warmup=0, repeats=3)["median_ms"] == pytest.approx(4.0)
    assert model.calls == 30  # bounded: 10 × repeats


def test_median_ci_coverage_matches_the_binomial():
    stats = pytest.importorskip("scipy.stats")
    for n in (6, 9, 12, 20, 31):
        x = list(range(1, n + 1))
        lo, hi = median_ci(x)
        j = int(lo)
        assert hi == n + 1 - j
        coverage = 1 - 2 * stats.binom.cdf(j - 1, n, 0.5)
        assert coverage >= 0.95 or j == 1
        if j + 1 <= (n + 1) // 2:
            assert 1 - 2 * stats.binom.cdf(j, n, 0.5) < 0.95  # the interval is the narrowest that covers


def test_interleaved_ratio_survives_drift_and_scales_by_the_stored_reference(clock, tmp_path):
    speed = [1.0, 1.4, 1.0, 1.7, 1.1, 1.3, 1.0, 1.6]  # the machine's slowness per round

    class Side:
        def __init__(self, ms: float) -> None:
            self.ms, self.rounds = ms, 0

        def __call__(self, warmup: int, repeats: int) -> list[lt.Pass]:
            factor = speed[self.rounds % len(speed)]
            self.rounds += 1
            return [lt.Pass(self.ms * factor)] * repeats

    res = interleave(Side(6.0), Side(2.0), ci=0.02, max_seconds=60)
    assert [res["ratio"], res["ratio_lo"], res["ratio_hi"]] == pytest.approx([3.0, 3.0, 3.0])
    assert res["reference_ms"] > 2.0  # the absolute numbers moved with the machine; the ratio did not
    assert res["rounds"] == 6  # the interval is already exact: stop at the minimum

    cache = LatencyCache(tmp_path / "c.sqlite")
    cache.put_reference("k", 2.5)
    refs = ReferenceLatency([LatencyCache(tmp_path / "run.sqlite"), cache])
    checks = []
    assert refs.get("k", lambda: checks.append(2.2) or 2.2) == 2.5  # the machine's value, checked: within 1.25×
    assert refs.get("k", lambda: pytest.fail("checked twice")) == 2.5 and checks == [2.2]
    assert LatencyCache(tmp_path / "run.sqlite").get_reference("k") == 2.5  # copied into the first store
    assert ReferenceLatency([LatencyCache(tmp_path / "run.sqlite"), cache]).get(
        "k", lambda: pytest.fail("a run's own value is not checked")) == 2.5
    stale = ReferenceLatency([LatencyCache(tmp_path / "run2.sqlite"), cache])
    assert stale.get("k", lambda: 1.9) == 1.9  # 2.5 > 1.25 × 1.9: calibrated on a loaded machine, replaced
    assert cache.get_reference("k") == LatencyCache(tmp_path / "run2.sqlite").get_reference("k") == 1.9
    assert ReferenceLatency([cache]).get("new", lambda: 1.75) == 1.75 and cache.get_reference("new") == 1.75


def test_interleaved_evaluator_reports_ratio_times_reference(tmp_path):
    cache = LatencyCache(tmp_path / "c.sqlite")
    ev = LatencyEvaluator(num_classes=10, in_chans=1, warmup=1, repeats=3, protocol="interleaved", max_seconds=2,
                          references=ReferenceLatency([cache]))
    import space

    out = ev.evaluate(space.wrn(16, 1, input_size=16))  # the reference itself: ratio ≈ 1
    key = ev.reference_key(batch=1, input_size=16)
    assert out["latency_reference_ms"] == cache.get_reference(key) > 0
    assert out["latency_ms"] == pytest.approx(out["latency_ratio"] * out["latency_reference_ms"])
    assert 0.7 < out["latency_ratio"] < 1.4 and out["latency_rounds"] >= 6 and out["latency_ci_ms"] >= 0
    assert set(out) == {"latency_ms", "latency_ms_b1", "latency_ci_ms_b1", "latency_ratio", "latency_reference_ms",
                        "latency_ci_ms", "latency_rounds"}
    with pytest.raises(ValueError, match="latency.protocol: must be one of plain, interleaved"):
        LatencyEvaluator(num_classes=10, in_chans=1, protocol="alternating")
