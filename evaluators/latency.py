"""Measured inference latency: median (and spread) of timed forward passes on a fixed input.

Protocol: eval mode under ``torch.inference_mode``; ``warmup`` untimed passes, then ``repeats``
timed ones. On the CPU each pass is timed with ``time.perf_counter`` at a fixed intra-op thread
count (restored afterwards); on CUDA each pass is bracketed by ``torch.cuda.Event``s and the
device is synchronised before reading them, so asynchronous kernel launches are not mistaken for
finished work. The median is the headline number (robust to scheduler noise); the inter-quartile
range says how noisy the machine was. ``ort-cpu``/``ort-cuda`` measure the same model exported to ONNX
and run by ONNX Runtime, with this protocol and these statistics (:mod:`.ort_latency`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from space import Arch, build_model
from space.onnx_export import arch_choices, export_model
from train.checks import check_positive_int, is_torch_device, resolve_device

from .latency_timing import check_shape, latency_stats, time_calls
from .metrics import Metric
from .onnx_runtime import check_ort_device, is_ort_device
from .ort_latency import measure_ort_latency

LATENCY_DEVICES = ("cpu", "cuda", "cuda:N", "ort-cpu", "ort-cuda")
"""What ``latency.device`` may name: a torch device, or ONNX Runtime on the CPU or a CUDA GPU."""


def check_device_name(device: Any, *, field: str = "latency.device") -> str:
    """``device`` if it is spelled as one of :data:`LATENCY_DEVICES` (nothing is probed); ``ValueError`` otherwise."""
    if not (is_torch_device(device) or is_ort_device(device)):
        raise ValueError(f"{field}: unknown device {device!r}; valid: {', '.join(LATENCY_DEVICES)}")
    return device


def check_latency_device(device: Any, *, field: str = "latency.device") -> None:
    """``device`` is valid and present here (CUDA for torch's ``cuda``, the execution provider for ``ort-*``);
    ``ValueError`` naming ``field`` otherwise."""
    if is_ort_device(check_device_name(device, field=field)):
        check_ort_device(device, field=field)
    else:
        resolve_device(device, field=field)


def _time_cuda(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    with torch.cuda.device(x.device):
        for _ in range(warmup):
            model(x)
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for start, end in events:
            start.record()
            model(x)
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]


def measure_latency(model: nn.Module, *, input_shape: tuple, device: str = "cpu", warmup: int = 10,
                    repeats: int = 30, threads: int | None = 1) -> dict[str, Any]:
    """Latency statistics (ms) of ``model`` on a random input of ``input_shape`` (batch first).

    Returns ``median_ms, mean_ms, p25_ms, p75_ms, iqr_ms, std_ms, repeats, device, batch``.
    ``threads`` fixes ``torch.set_num_threads`` for the measurement (``None``: leave it); the
    previous count, the model's device and its training flag are restored afterwards. An ``ort-*``
    ``device`` exports ``model`` (4-d ``input_shape``) and times it with ONNX Runtime instead.
    """
    if is_ort_device(check_device_name(device)):
        return measure_ort_latency(model, input_shape=check_shape(input_shape), device=device, warmup=warmup,
                                   repeats=repeats, threads=threads)
    dev = resolve_device(device, field="latency.device")
    shape = check_shape(input_shape)
    check_positive_int(warmup, "latency.warmup", minimum=0)
    check_positive_int(repeats, "latency.repeats")
    if threads is not None:
        check_positive_int(threads, "latency.threads")
    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    was_training, prev_threads = model.training, torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        model.to(dev).eval()
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dev)
        with torch.inference_mode():
            if dev.type == "cuda":
                times = _time_cuda(model, x, warmup, repeats)
            else:
                times = time_calls(lambda: model(x), warmup=warmup, repeats=repeats)
    finally:
        torch.set_num_threads(prev_threads)
        model.to(home).train(was_training)
    return {**latency_stats(times), "repeats": repeats, "device": str(dev), "batch": shape[0]}


class LatencyEvaluator:
    """Measured evaluator: median forward latency of the built model at each batch size.

    ``evaluate`` returns ``latency_ms`` (median at the first batch size) and, per batch size B,
    ``latency_ms_b{B}`` (median) and ``latency_iqr_ms_b{B}``. On an ``ort-*`` device the model is exported once
    (the batch axis is dynamic) and every batch size is timed with ONNX Runtime. ``prepare`` (build, export)
    and ``measure`` (timing only) split ``evaluate`` so a search takes its measurement gate for the second only.
    """

    name = "latency"
    cheap = False

    def __init__(self, *, num_classes: int, in_chans: int, device: str = "cpu", batch_sizes: tuple[int, ...] = (1,),
                 warmup: int = 10, repeats: int = 30, threads: int | None = 1) -> None:
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        check_latency_device(device)
        self.device = device
        if isinstance(batch_sizes, int) or not batch_sizes:
            raise ValueError(f"latency.batch_sizes: must be a non-empty list of batch sizes, got {batch_sizes!r}")
        self.batch_sizes = tuple(check_positive_int(b, "latency.batch_sizes") for b in batch_sizes)
        self.warmup = check_positive_int(warmup, "latency.warmup", minimum=0)
        self.repeats = check_positive_int(repeats, "latency.repeats")
        self.threads = threads if threads is None else check_positive_int(threads, "latency.threads")

    def prepare(self, arch: Arch) -> nn.Module | bytes:
        """What is timed: the built model, or for an ``ort-*`` device its in-memory ONNX export (fp32, eval mode,
        :data:`space.onnx_export.OPSET`)."""
        with torch.random.fork_rng(devices=[]):
            model = build_model(arch, num_classes=self.num_classes, in_chans=self.in_chans)
        if not is_ort_device(self.device):
            return model
        return export_model(model, input_shape=(self.batch_sizes[0], self.in_chans, arch.input_size, arch.input_size),
                            what=f"arch {arch.arch_id} ({arch_choices(arch)})")

    def measure(self, prepared: nn.Module | bytes, *, input_size: int) -> dict[str, float]:
        """``evaluate``'s result for what :meth:`prepare` returned (``input_size``: the architecture's)."""
        out: dict[str, float] = {}
        for b in self.batch_sizes:
            shape = (b, self.in_chans, input_size, input_size)
            timer = measure_ort_latency if isinstance(prepared, bytes) else measure_latency
            stats = timer(prepared, input_shape=shape, device=self.device, warmup=self.warmup, repeats=self.repeats,
                          threads=self.threads)
            out[f"latency_ms_b{b}"] = stats["median_ms"]
            out[f"latency_iqr_ms_b{b}"] = stats["iqr_ms"]
        return {"latency_ms": out[f"latency_ms_b{self.batch_sizes[0]}"], **out}

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (one measurement per batch size)."""
        return self.measure(self.prepare(arch), input_size=arch.input_size)


LATENCY_MS = Metric("latency_ms", "min", label="latency (ms)", unit="ms", limit=True)
"""Median forward latency at the first batch size; cheap only when predicted from a table. The ``latency``
evaluator is registered in :mod:`.latency_service`, beside its build hook (a search measures through the
service: once per architecture, behind the gate, cached)."""
