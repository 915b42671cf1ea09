"""Latency measured with ONNX Runtime (``latency.device: ort-cpu``): the torch path's result shape, checked against
ONNX Runtime timed directly, cached and gated apart from torch latency, and devices validated in one line."""
from __future__ import annotations

import statistics
import time

import onnxruntime as ort
import pytest
import torch

import space
from evaluators import LatencyEvaluator, latency_service, measure_latency
from evaluators.latency_gate import MeasureGate
from evaluators.latency_service import LatencyService, RunLatency
from search.config import ConfigError, parse_config
from space.onnx_export import INPUT_NAME


@pytest.fixture
def fresh_memo():
    latency_service._MEMO.clear()
    yield
    latency_service._MEMO.clear()


def test_result_has_the_torch_paths_shape_and_is_positive():
    arch = space.wrn(10, 1, input_size=16)
    model = space.build_model(arch, num_classes=10, in_chans=1)
    torch_out = measure_latency(model, input_shape=(2, 1, 16, 16), warmup=1, repeats=5)
    ort_out = measure_latency(model, input_shape=(2, 1, 16, 16), device="ort-cpu", warmup=1, repeats=5)
    assert set(ort_out) == set(torch_out)
    assert (ort_out["device"], ort_out["batch"], ort_out["repeats"]) == ("ort-cpu", 2, 5)
    assert 0 < ort_out["p25_ms"] <= ort_out["median_ms"] <= ort_out["p75_ms"]
    ev = LatencyEvaluator(num_classes=10, in_chans=1, device="ort-cpu", batch_sizes=(2, 1), warmup=1, repeats=5)
    data = ev.prepare(arch)  # exported once; the batch axis is dynamic
    for _ in range(2):  # measured twice: the same keys each time
        out = ev.measure(data, input_size=16)
        assert set(out) == {"latency_ms", "latency_ms_b2", "latency_iqr_ms_b2", "latency_ms_b1", "latency_iqr_ms_b1"}
        assert out["latency_ms"] == out["latency_ms_b2"] > 0 and out["latency_ms_b1"] > 0


def _session_run_ms(data: bytes, shape: tuple[int, ...], repeats: int = 40) -> float:
    """ONNX Runtime timed directly: its own session on default options but one thread, median of session.run."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    x = {INPUT_NAME: torch.randn(shape).numpy()}
    for _ in range(5):
        sess.run(None, x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        sess.run(None, x)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(times)


def test_matches_onnx_runtime_timed_directly_and_orders_models():
    small, big = space.wrn(10, 1, input_size=16), space.wrn(16, 4, input_size=16)
    ev = LatencyEvaluator(num_classes=10, in_chans=3, device="ort-cpu", warmup=5, repeats=40)
    measured = {}
    for arch in (small, big):
        data = ev.prepare(arch)
        measured[arch.arch_id] = ev.measure(data, input_size=16)["latency_ms"]
        direct = _session_run_ms(data, (1, 3, 16, 16))
        assert direct / 3 < measured[arch.arch_id] < 3 * direct, (arch.arch_id, measured[arch.arch_id], direct)
    assert measured[big.arch_id] > 3 * measured[small.arch_id]  # ~60× the MACs


def test_cached_and_gated_apart_from_torch_latency(tmp_path, fresh_memo):
    cache = tmp_path / "latency_cache.sqlite"
    arch = space.wrn(10, 1, input_size=16)
    results = {}
    for device in ("cpu", "ort-cpu"):
        settings = {"device": device, "warmup": 1, "repeats": 3, "lock_dir": str(tmp_path)}
        lat = parse_config({"latency": settings}).latency
        service = LatencyService.from_settings(lat, cache_path=cache)
        run = RunLatency(service, in_chans=1, num_classes=10)
        results[device] = run.evaluate(arch)
        assert results[device]["latency_device"] == device and results[device]["latency_ms"] > 0
        assert service.gate.path == MeasureGate.for_device("cpu", tmp_path).path  # one gate for the one CPU
    keys = [LatencyService(parse_config({"latency": {"device": d}}).latency).key(arch, in_chans=1, num_classes=10)
            for d in ("cpu", "ort-cpu")]
    assert keys[0] != keys[1] and len(service.cache) == 2
    assert {d: service.cache.get(k)["latency_ms"] for d, k in zip(("cpu", "ort-cpu"), keys)} == \
        {d: r["latency_ms"] for d, r in results.items()}


@pytest.mark.parametrize("device", ["gpu", "ort", "ort-gpu", "cpu:0", ""])
def test_bad_device_is_one_line_naming_the_field(device):
    with pytest.raises(ConfigError) as info:
        parse_config({"latency": {"device": device}})
    assert str(info.value) == f"latency.device: unknown device {device!r}; valid: cpu, cuda, cuda:N, ort-cpu, ort-cuda"
    with pytest.raises(ValueError, match="latency.device: unknown device"):
        LatencyEvaluator(num_classes=10, in_chans=1, device=device)


def test_torch_devices_still_accepted_and_ort_cuda_needs_its_provider():
    for device in ("cpu", "cuda", "cuda:1", "ort-cpu", "ort-cuda"):
        assert parse_config({"latency": {"device": device}}).latency.device == device
    with pytest.raises(ConfigError, match="ray.gpus_per_trial: is 0 but latency.device is 'ort-cuda'"):
        parse_config({"objectives": ["val_acc", "latency_ms"], "latency": {"device": "ort-cuda"}})
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the CUDA provider")
    with pytest.raises(ValueError) as info:
        LatencyEvaluator(num_classes=10, in_chans=1, device="ort-cuda")
    assert str(info.value).startswith("latency.device: ort-cuda needs CUDAExecutionProvider") and \
        "\n" not in str(info.value)


def test_interleaved_on_onnx_runtime_times_an_exported_reference(tmp_path):
    from evaluators.latency_cache import LatencyCache
    from evaluators.latency_protocol import ReferenceLatency

    cache = LatencyCache(tmp_path / "c.sqlite")
    ev = LatencyEvaluator(num_classes=10, in_chans=1, device="ort-cpu", warmup=1, repeats=3, protocol="interleaved",
                          max_seconds=1, references=ReferenceLatency([cache]))
    small, big = space.wrn(10, 1, input_size=16), space.wrn(16, 4, input_size=16)
    data = ev.prepare(small)
    assert isinstance(data, bytes) and isinstance(ev._refs[16], bytes)  # the reference is exported too
    a = ev.measure(data, input_size=16)
    b = ev.measure(ev.prepare(big), input_size=16)
    assert a["latency_reference_ms"] == b["latency_reference_ms"] == \
        cache.get_reference(ev.reference_key(batch=1, input_size=16))  # calibrated once, on ONNX Runtime
    assert b["latency_ratio"] > 3 * a["latency_ratio"] > 0  # ~60× the MACs
