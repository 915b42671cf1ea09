"""Per-unit latency table: canonical keys, units covering the model exactly, the predictor's sum,
on-the-fly measurement of missing keys, YAML round trip, the overhead fit and Spearman's ρ."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

import space
from evaluators.latency_table import (
    LatencyPredictor,
    LatencyTable,
    PredictedLatencyEvaluator,
    Unit,
    arch_units,
    build_unit,
    fit_overhead,
    spearman,
    timed,
    unit_key,
)
from space import Arch, Head, Stage, Stem, build_model
from space.complexity import count_params


def _arch(order: str = "post", depth: int = 3) -> Arch:
    stages = (Stage("basic", depth, 8, 1, order=order), Stage("basic", 1, 16, 2, order=order, act="elu"))
    return Arch(stem=Stem(width=4, norm_act=order == "post"), stages=stages, head=Head(), input_size=16)


def _keys(arch: Arch, in_chans: int = 1, num_classes: int = 10) -> list[str]:
    table = LatencyTable(device="cpu", batch=1, in_chans=in_chans, num_classes=num_classes, warmup=0, repeats=1,
                         rounds=1)
    return [k for k, _ in LatencyPredictor(table).breakdown(arch)]


def test_keys_are_canonical_strings():
    # golden: a key is part of the table format, so it must not drift between versions or processes
    assert _keys(space.wrn(10, 1, input_size=16)) == [
        "stem c=1>16 k=3 s=1 res=16",
        "block=basic c=16>16 s=1 res=16 order=pre norm=bn act=relu attn=none",
        "block=basic c=16>32 s=2 res=16 order=pre norm=bn act=relu attn=none",
        "block=basic c=32>64 s=2 res=8 order=pre norm=bn act=relu attn=none",
        "head c=64 res=4 final=bn+relu hidden=0 classes=10",
    ]
    keys = _keys(_arch("post", depth=3))
    assert keys[0] == "stem c=1>4 k=3 s=1 res=16 norm=bn act=relu"
    assert keys[1] == "block=basic c=4>8 s=1 res=16 order=post norm=bn act=relu attn=none"
    assert keys[2] == keys[3] == "block=basic c=8>8 s=1 res=16 order=post norm=bn act=relu attn=none"
    assert keys[-1] == "head c=16 res=8 final=none hidden=0 classes=10"


def test_keys_unique_per_field():
    base = Stage("basic", 1, 16, 1, order="pre")
    variants = [base, replace(base, width=24), replace(base, stride=2), replace(base, order="post"),
                replace(base, act="elu"), replace(base, norm="gn"), replace(base, norm="gn", norm_args={"groups": 4}),
                replace(base, attention="se"), replace(base, block_args={"dropout": 0.1}),
                replace(base, block="bottleneck")]
    keys = {unit_key(Unit("block", s, 16), res=16, in_chans=3, num_classes=10) for s in variants}
    keys |= {unit_key(Unit("block", base, 8), res=16, in_chans=3, num_classes=10),
             unit_key(Unit("block", base, 16), res=8, in_chans=3, num_classes=10),
             unit_key(Unit("stage", base, 16), res=16, in_chans=3, num_classes=10)}
    assert len(keys) == len(variants) + 3
    heads = {unit_key(Unit("head", s, 16, head=h), res=4, in_chans=3, num_classes=n)
             for s in (base, replace(base, order="post"), replace(base, act="elu"))
             for h in (Head(), Head(hidden=32)) for n in (10, 100)}
    assert len(heads) == 3 * 2 * 2
    # what the graph does not depend on is not in the key: a bare stem ignores the stage's norm/act
    bare = {unit_key(Unit("stem", s, 16, stem=Stem(width=16)), res=32, in_chans=3, num_classes=10)
            for s in (base, replace(base, act="elu"), replace(base, norm="gn"))}
    assert len(bare) == 1
    dropout = {unit_key(Unit("head", base, 16, head=Head(dropout=d)), res=4, in_chans=3, num_classes=10)
               for d in (0.0, 0.5)}
    assert len(dropout) == 1


@pytest.mark.parametrize("order", ["pre", "post"])
def test_units_cover_the_model_exactly(order):
    arch = _arch(order)
    units = arch_units(arch)
    assert [u.kind for u in units] == ["stem", "block", "block", "block", "block", "head"]
    built = [build_unit(u, in_chans=1, num_classes=10) for u in units]
    assert sum(count_params(m) for m in built) == count_params(build_model(arch, num_classes=10, in_chans=1))
    x = torch.zeros(1, 1, 16, 16)
    with torch.inference_mode():
        for m in built:
            x = m.eval()(x)
    assert x.shape == (1, 10)


def _table_with_known_ms(arch: Arch) -> tuple[LatencyTable, dict[str, float]]:
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=0, repeats=1, rounds=1)
    LatencyPredictor(table).breakdown(arch)  # fills the entries (and output resolutions) by measuring
    known = {k: float(2 ** i) for i, k in enumerate(sorted(table.entries))}
    for k, v in known.items():
        table.entries[k]["ms"] = v
    return table, known


def test_predictor_sums_units_with_repeats_and_calibration():
    arch = _arch("post", depth=3)
    table, known = _table_with_known_ms(arch)
    keys = _keys(arch)
    assert len(keys) == 6 and len(set(keys)) == 5  # the two repeated blocks share one entry
    expected = sum(known[k] for k in keys)
    predictor = LatencyPredictor(table, measure_missing=False)
    assert predictor.units_ms(arch) == expected
    table.scale, table.overhead_ms = 1.5, 0.25
    assert predictor.predict(arch) == pytest.approx(1.5 * expected + 0.25)
    deeper = replace(arch, stages=(replace(arch.stages[0], depth=4), arch.stages[1]))
    assert predictor.units_ms(deeper) == expected + known[keys[2]]  # one more repeat, no new key


def test_missing_key_is_measured_on_the_fly_or_named():
    arch = space.wrn(10, 1, input_size=16)
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=0, repeats=2, rounds=1)
    with pytest.raises(KeyError, match="no entry for 'stem c=1>16"):
        LatencyPredictor(table, measure_missing=False).predict(arch)
    predictor = LatencyPredictor(table)
    first = predictor.predict(arch)
    assert first > 0 and len(predictor.measured) == 5 and set(predictor.measured) == set(table.entries)
    assert predictor.predict(arch) == first and len(predictor.measured) == 5  # now looked up
    gpu = LatencyTable(device="cuda", batch=1, in_chans=1, num_classes=10)
    if not torch.cuda.is_available():  # no device to measure on: a clear error, not a silent guess
        with pytest.raises(KeyError, match="not available here"):
            LatencyPredictor(gpu).predict(arch)


def test_yaml_round_trip_and_malformed(tmp_path):
    arch = _arch("pre", depth=2)
    table, _ = _table_with_known_ms(arch)
    table.scale, table.overhead_ms, table.meta = 1.1, 0.02, {"host": "x"}
    path = table.save(tmp_path / "t.yaml")
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    assert LatencyPredictor(loaded, measure_missing=False).predict(arch) == pytest.approx(
        LatencyPredictor(table, measure_missing=False).predict(arch))
    (tmp_path / "bad.yaml").write_text("device: cpu\n")
    with pytest.raises(ValueError, match="latency.table: not a latency table"):
        LatencyTable.load(tmp_path / "bad.yaml")
    data = table.to_dict()
    data["entries"] = {"k": {"ms": -1.0, "out": 4}}
    with pytest.raises(ValueError, match="ms must be a finite number >= 0"):
        LatencyTable.from_dict(data)
    with pytest.raises(ValueError, match="does not exist"):
        LatencyTable.load(tmp_path / "none.yaml")


class _Spoiled(torch.nn.Module):
    """Slow (a burst of foreign work) for its first ``n_slow`` calls, fast afterwards."""

    def __init__(self, n_slow: int) -> None:
        super().__init__()
        self.lin, self.calls, self.n_slow = torch.nn.Linear(2, 2), 0, n_slow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls <= self.n_slow:
            time.sleep(0.01)
        return self.lin(x)


def test_timed_keeps_the_best_round_inside_one_gate():
    entered: list[int] = []

    @contextlib.contextmanager
    def gate():
        entered.append(1)
        yield

    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=1, repeats=5, rounds=3)
    spoiled = _Spoiled(n_slow=6)  # the whole first round (1 warm-up + 5 timed passes) is slow
    assert timed(spoiled, (1, 2), table=table, context=gate) < 5.0 and len(entered) == 1
    plain = replace(table, rounds=1)
    assert timed(_Spoiled(n_slow=6), (1, 2), table=plain) >= 10.0  # a single round keeps the burst


def test_timed_discards_preempted_passes(monkeypatch):
    import evaluators.latency_timing as lt  # the timing loop the table shares with measure_latency

    class Clock:  # stands in for getrusage: a slow pass 'was preempted' (its switch count rose)
        ru_nivcsw = 0

        def getrusage(self, who):
            return self

    clock = Clock()

    class Flaky(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls % 3:  # two passes in three lose the CPU for 10 ms
                time.sleep(0.01)
                clock.ru_nivcsw += 1
            return x

    monkeypatch.setattr(lt, "resource", type("R", (), {"RUSAGE_SELF": 0, "getrusage": clock.getrusage}))
    table = LatencyTable(device="cpu", batch=1, in_chans=1, num_classes=10, warmup=0, repeats=6, rounds=1)
    flaky = Flaky()
    assert timed(flaky, (1, 2), table=table) < 5.0  # the median of all passes would be ~10 ms
    assert flaky.calls == 18  # each discarded pass was replaced until 6 clean ones were timed


def test_fit_overhead_recovers_line_and_resists_outlier():
    u = np.array([0.2, 0.3, 0.45, 0.5, 0.7, 0.9])
    scale, overhead = fit_overhead(u, 1.2 * u + 0.05)
    assert scale == pytest.approx(1.2) and overhead == pytest.approx(0.05)
    spoiled = 1.2 * u + 0.05
    spoiled[2] *= 3  # one measurement taken while the machine was busy
    scale, overhead = fit_overhead(u, spoiled)
    assert scale == pytest.approx(1.2, rel=0.05) and overhead == pytest.approx(0.05, abs=0.03)
    assert fit_overhead([0.4], [0.45]) == (1.0, pytest.approx(0.05))  # one point: a pure overhead


def test_fit_overhead_is_never_negative():
    u = np.array([1.0, 1.2, 1.5, 1.9, 2.4])
    m = 1.5 * u - 0.3  # a line whose intercept is negative (what a noisy calibration produced)
    scale, overhead = fit_overhead(u, m)
    assert overhead == 0.0 and scale == pytest.approx(float(np.median(m / u)))  # the robust slope through 0
    assert fit_overhead([0.4], [0.3]) == (pytest.approx(0.75), 0.0)  # one point: through the origin
    with pytest.raises(ValueError, match="every sum of units must be > 0"):
        fit_overhead([0.0, 1.0], [0.1, 1.1])
    with pytest.raises(ValueError, match="fit_overhead"):
        fit_overhead([], [])


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(5):
        x, y = rng.integers(0, 6, 15).astype(float), rng.normal(size=15)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_predicted_evaluator_is_cheap_and_checks_the_problem():
    arch = _arch("post", depth=1)
    table, known = _table_with_known_ms(arch)
    ev = PredictedLatencyEvaluator(table=table, num_classes=10, in_chans=1, measure_missing=False)
    out = ev.evaluate(arch, 1)
    assert ev.cheap and ev.name == "latency_predicted"
    assert out == {"latency_ms": sum(known[k] for k in _keys(arch)), "latency_ms_b1": out["latency_ms"]}
    with pytest.raises(ValueError, match="built for 1-channel images and 10 classes.*3 channels"):
        PredictedLatencyEvaluator(table=table, num_classes=10, in_chans=3)
