"""``latency.protocol: interleaved`` in a search's latency service: ratio × the stored reference, the reference kept
in the run's cache and the machine's file (a resumed or second trial process scales by the same number), the
trial attributes a search records, and the config's checks."""
from __future__ import annotations

import pytest

import space
from evaluators import latency_service
from evaluators.latency import LatencyEvaluator
from evaluators.latency_cache import LatencyCache
from evaluators.latency_service import REFERENCE_FILE, LatencyService, RunLatency
from search.config import ConfigError, parse_config
from search.searcher import recorded


def _lat(tmp_path, **overrides):
    return parse_config({"latency": {"protocol": "interleaved", "warmup": 1, "repeats": 3, "max_seconds": 1,
                                     "lock_dir": str(tmp_path / "locks"), **overrides}}).latency


def _key() -> str:
    return LatencyEvaluator(num_classes=10, in_chans=1).reference_key(batch=1, input_size=16)


@pytest.fixture
def fresh_memo():
    latency_service._MEMO.clear()
    yield
    latency_service._MEMO.clear()


def test_interleaved_trial_reports_ratio_reference_and_spread(tmp_path, fresh_memo):
    run_cache = tmp_path / "run" / "latency_cache.sqlite"
    ev = RunLatency(LatencyService(_lat(tmp_path), cache_path=run_cache), in_chans=1, num_classes=10)
    out = ev.evaluate(space.wrn(10, 1, input_size=16))
    assert out["latency_protocol"] == "interleaved" and out["latency_device"] == "cpu"
    assert out["latency_ms"] == pytest.approx(out["latency_ratio"] * out["latency_reference_ms"])
    assert out["latency_ci_ms"] >= 0 and out["latency_rounds"] >= 6
    assert {"latency_protocol", "latency_ratio", "latency_reference_ms", "latency_ci_ms"} <= set(recorded())
    # the reference is stored with the run and on the machine, under one key
    key = _key()
    ref = [c.get_reference(key) for c in (LatencyCache(run_cache), LatencyCache(tmp_path / "locks" / REFERENCE_FILE))]
    assert ref == [out["latency_reference_ms"]] * 2


def test_a_resumed_run_scales_by_its_own_stored_reference(tmp_path, fresh_memo):
    run_cache = tmp_path / "run" / "latency_cache.sqlite"
    first = RunLatency(LatencyService(_lat(tmp_path), cache_path=run_cache), in_chans=1, num_classes=10)
    first.evaluate(space.wrn(10, 1, input_size=16))
    key = _key()
    LatencyCache(run_cache).put_reference(key, 123.0)  # what this run calibrated, whatever the machine says now
    latency_service._MEMO.clear()  # a new trial process of the resumed run, with another machine file
    again = RunLatency(LatencyService(_lat(tmp_path, lock_dir=str(tmp_path / "other")), cache_path=run_cache),
                       in_chans=1, num_classes=10)
    out = again.evaluate(space.wrn(10, 2, input_size=16))
    assert out["latency_reference_ms"] == 123.0
    assert LatencyCache(tmp_path / "other" / REFERENCE_FILE).get_reference(key) is None  # found, not calibrated


def test_plain_is_the_default_and_the_protocol_is_part_of_the_cache_key(tmp_path, fresh_memo):
    plain = parse_config({}).latency
    assert plain.protocol == "plain"
    arch = space.wrn(10, 1, input_size=16)
    keys = {LatencyService(lat).key(arch, in_chans=1, num_classes=10) for lat in (plain, _lat(tmp_path))}
    assert len(keys) == 2
    with pytest.raises(ConfigError, match="latency.max_seconds: must be greater than 0"):
        parse_config({"latency": {"max_seconds": 0}})
    with pytest.raises(ConfigError, match="latency.ci: must be less than 1"):
        parse_config({"latency": {"ci": 1.5}})


def _plain_reference_ms() -> float:
    """The reference network (wrn-16-1 at 16², one channel, batch 1, one thread) timed now with the plain protocol:
    a measurement independent of the interleaved protocol's calibration."""
    from evaluators.latency import measure_latency

    model = space.build_model(space.wrn(16, 1, input_size=16), num_classes=10, in_chans=1)
    return measure_latency(model, input_shape=(1, 1, 16, 16), warmup=5, repeats=30, threads=1, rounds=5)["median_ms"]


def test_a_machine_reference_calibrated_under_load_is_replaced_by_a_new_run(tmp_path, fresh_memo):
    """The machine's stored reference was calibrated while other work slowed the machine (injected: 4× what it
    measures now). A new run checks what it finds there against a calibration of its own before adopting it: the
    stale value is replaced, in the run's cache and on the machine, and the run's latencies scale by the new one."""
    key = _key()
    machine = LatencyCache(tmp_path / "locks" / REFERENCE_FILE)
    stale = 4 * _plain_reference_ms()
    machine.put_reference(key, stale)
    run_cache = tmp_path / "run" / "latency_cache.sqlite"
    ev = RunLatency(LatencyService(_lat(tmp_path), cache_path=run_cache), in_chans=1, num_classes=10)
    out = ev.evaluate(space.wrn(10, 1, input_size=16))
    plain = _plain_reference_ms()
    assert 0.5 * plain < out["latency_reference_ms"] < 2 * plain  # this moment's speed, not the stale 4×
    assert machine.get_reference(key) == LatencyCache(run_cache).get_reference(key) == out["latency_reference_ms"]


def test_a_machine_reference_faster_than_now_is_kept(tmp_path, fresh_memo):
    """A stored reference below what the machine measures now (the machine is loaded now: the interleaved ratio
    cancels that) is kept, so runs on this machine stay comparable."""
    key = _key()
    machine = LatencyCache(tmp_path / "locks" / REFERENCE_FILE)
    fast = _plain_reference_ms() / 4
    machine.put_reference(key, fast)
    ev = RunLatency(LatencyService(_lat(tmp_path), cache_path=tmp_path / "run" / "latency_cache.sqlite"),
                    in_chans=1, num_classes=10)
    assert ev.evaluate(space.wrn(10, 1, input_size=16))["latency_reference_ms"] == fast
    assert machine.get_reference(key) == fast
