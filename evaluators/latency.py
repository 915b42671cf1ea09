"""Measured inference latency: median (and spread) of timed forward passes on a fixed input.

Protocol: eval mode under ``torch.inference_mode``; per round ``warmup`` untimed passes, then ``repeats``
timed ones. On the CPU each pass is timed with ``time.perf_counter`` at a fixed intra-op thread
count (restored afterwards), and a pass the OS preempted is discarded and replaced; on CUDA each pass is
bracketed by ``torch.cuda.Event``s and the device is synchronised before reading them, so asynchronous kernel
launches are not mistaken for finished work. The headline number is the shared estimator
(:func:`.latency_timing.estimate`: median over rounds of the median of kept passes), the one the per-unit
table uses too; the inter-quartile range says how noisy the machine was. The interleaved protocol
(:mod:`.latency_protocol`) times the model against a reference network instead. ``ort-cpu``/``ort-cuda``
measure the same model exported to ONNX and run by ONNX Runtime, with this protocol and these statistics
(:mod:`.ort_latency`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn as nn

from space import Arch, build_model
from space.onnx_export import arch_choices, export_model
from train.checks import check_positive_int, is_torch_device, resolve_device

from .latency_protocol import (
    REFERENCE,
    ReferenceLatency,
    calibrate_rounds,
    check_protocol,
    interleave,
    reference_arch,
    reference_key,
)
from .latency_timing import Pass, Rounds, check_shape, rounds_stats, time_passes
from .metrics import Metric
from .onnx_runtime import check_ort_device, is_ort_device
from .ort_latency import OrtRunner

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


def _cuda_passes(model: nn.Module, x: torch.Tensor, warmup: int, repeats: int) -> list[Pass]:
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
        return [Pass(start.elapsed_time(end)) for start, end in events]


@contextlib.contextmanager
def timing_rounds(model: nn.Module | bytes, *, input_shape: tuple, device: str = "cpu",
                  threads: int | None = 1) -> Iterator[Rounds]:
    """``rounds(warmup, repeats) -> passes`` of ``model`` on a seeded random input of ``input_shape``, valid inside
    the context: eval mode, ``torch.inference_mode``, ``threads`` intra-op threads; the model's device, training
    flag and the thread count are restored on exit. ``bytes`` (a serialized ONNX model) or an ``ort-*`` device run
    ONNX Runtime (a module is exported first). CUDA passes are timed with events and never flagged preempted."""
    shape = check_shape(input_shape)
    if threads is not None:
        check_positive_int(threads, "latency.threads")
    if isinstance(model, bytes) or is_ort_device(check_device_name(device)):
        data = model if isinstance(model, bytes) else export_model(model, input_shape=shape, what="model")
        run = OrtRunner(data, input_shape=shape, device=device, threads=threads)
        yield lambda warmup, repeats: time_passes(run, warmup=warmup, repeats=repeats)
        return
    dev = resolve_device(device, field="latency.device")
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
                yield lambda warmup, repeats: _cuda_passes(model, x, warmup, repeats)
            else:
                yield lambda warmup, repeats: time_passes(lambda: model(x), warmup=warmup, repeats=repeats)
    finally:
        torch.set_num_threads(prev_threads)
        model.to(home).train(was_training)


def measure_latency(model: nn.Module | bytes, *, input_shape: tuple, device: str = "cpu", warmup: int = 10,
                    repeats: int = 30, threads: int | None = 1, rounds: int = 1) -> dict[str, Any]:
    """Latency statistics (ms) of ``model`` on a random input of ``input_shape`` (batch first).

    ``rounds`` rounds of ``warmup`` untimed and ``repeats`` kept passes; ``median_ms`` is the shared estimator
    (:func:`.latency_timing.estimate`: median over rounds of the median of passes not preempted), the other keys
    describe the kept passes: ``mean_ms, p25_ms, p75_ms, iqr_ms, std_ms``, plus ``repeats, rounds, timed,
    preempted, device, batch``. ``threads`` fixes ``torch.set_num_threads`` for the measurement (``None``:
    leave it); the previous count, the model's device and its training flag are restored afterwards. An
    ``ort-*`` ``device`` exports ``model`` (4-d ``input_shape``) and times it with ONNX Runtime instead.
    """
    check_device_name(device)
    check_positive_int(warmup, "latency.warmup", minimum=0)
    check_positive_int(repeats, "latency.repeats")
    check_positive_int(rounds, "latency.rounds")
    with timing_rounds(model, input_shape=input_shape, device=device, threads=threads) as run:
        timed = [run(warmup, repeats) for _ in range(rounds)]
    name = device.strip().lower() if is_ort_device(device) else str(resolve_device(device, field="latency.device"))
    return {**rounds_stats(timed), "repeats": repeats, "device": name, "batch": input_shape[0]}


class LatencyEvaluator:
    """Measured evaluator: forward latency of the built model at each batch size.

    ``protocol="plain"``: ``warmup`` untimed and ``repeats`` kept passes, the shared estimator
    (:func:`measure_latency`); ``evaluate`` returns ``latency_ms`` (at the first batch size) and, per batch size B,
    ``latency_ms_b{B}`` and ``latency_iqr_ms_b{B}``. ``protocol="interleaved"`` (:mod:`.latency_protocol`): the
    model alternates with the reference network until the ratio's interval is within ``ci`` (or ``max_seconds``);
    ``latency_ms_b{B} = ratio × reference``, ``latency_ci_ms_b{B}`` the interval's half-width in ms, and for the
    first batch size ``latency_ratio``, ``latency_reference_ms``, ``latency_ci_ms`` and ``latency_rounds``. The
    reference's latency comes from ``references`` (calibrated with ``warmup``/``repeats`` when no store has it).
    On an ``ort-*`` device the model is exported once (the batch axis is dynamic) and timed with ONNX Runtime.
    ``prepare`` (build, export) and ``measure`` (timing only) split ``evaluate`` so a search takes its measurement
    gate for the second only.
    """

    name = "latency"
    cheap = False

    def __init__(self, *, num_classes: int, in_chans: int, device: str = "cpu", batch_sizes: tuple[int, ...] = (1,),
                 warmup: int = 10, repeats: int = 30, threads: int | None = 1, protocol: str = "plain",
                 ci: float = 0.02, max_seconds: float = 10.0, references: ReferenceLatency | None = None) -> None:
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
        self.protocol = check_protocol(protocol)
        for field, value in (("ci", ci), ("max_seconds", max_seconds)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"latency.{field}: must be a number > 0, got {value!r}")
        self.ci, self.max_seconds = float(ci), float(max_seconds)
        self.references = references if references is not None else ReferenceLatency()
        self._refs: dict[int, nn.Module | bytes] = {}

    def _build(self, arch: Arch, what: str) -> nn.Module | bytes:
        with torch.random.fork_rng(devices=[]):
            model = build_model(arch, num_classes=self.num_classes, in_chans=self.in_chans)
        if not is_ort_device(self.device):
            return model
        return export_model(model, input_shape=(self.batch_sizes[0], self.in_chans, arch.input_size, arch.input_size),
                            what=what)

    def prepare(self, arch: Arch) -> nn.Module | bytes:
        """What is timed: the built model, or for an ``ort-*`` device its in-memory ONNX export (fp32, eval mode,
        :data:`space.onnx_export.OPSET`); the interleaved protocol's reference is prepared here too, once."""
        if self.protocol == "interleaved" and arch.input_size not in self._refs:
            self._refs[arch.input_size] = self._build(reference_arch(arch.input_size), f"reference {REFERENCE}")
        return self._build(arch, f"arch {arch.arch_id} ({arch_choices(arch)})")

    def reference_key(self, *, batch: int, input_size: int) -> str:
        """What a calibrated reference latency is stored under: the setting, this host and torch version."""
        return reference_key(device=self.device, batch=batch, input_size=input_size, in_chans=self.in_chans,
                             num_classes=self.num_classes, threads=self.threads)

    def measure(self, prepared: nn.Module | bytes, *, input_size: int) -> dict[str, float]:
        """``evaluate``'s result for what :meth:`prepare` returned (``input_size``: the architecture's)."""
        out: dict[str, float] = {}
        first: dict[str, float] = {}
        for b in self.batch_sizes:
            shape = (b, self.in_chans, input_size, input_size)
            if self.protocol == "plain":
                stats = measure_latency(prepared, input_shape=shape, device=self.device, warmup=self.warmup,
                                        repeats=self.repeats, threads=self.threads)
                out[f"latency_ms_b{b}"] = stats["median_ms"]
                out[f"latency_iqr_ms_b{b}"] = stats["iqr_ms"]
                continue
            ref_model = self._refs[input_size]
            with timing_rounds(prepared, input_shape=shape, device=self.device, threads=self.threads) as cand, \
                    timing_rounds(ref_model, input_shape=shape, device=self.device, threads=self.threads) as ref:
                ref_ms = self.references.get(self.reference_key(batch=b, input_size=input_size),
                                             lambda: calibrate_rounds(ref, warmup=self.warmup, repeats=self.repeats))
                res = interleave(cand, ref, ci=self.ci, max_seconds=self.max_seconds)
            out[f"latency_ms_b{b}"] = res["ratio"] * ref_ms
            out[f"latency_ci_ms_b{b}"] = (res["ratio_hi"] - res["ratio_lo"]) / 2 * ref_ms
            first = first or {"latency_ratio": res["ratio"], "latency_reference_ms": ref_ms,
                              "latency_ci_ms": out[f"latency_ci_ms_b{b}"], "latency_rounds": float(res["rounds"])}
        return {"latency_ms": out[f"latency_ms_b{self.batch_sizes[0]}"], **first, **out}

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (one measurement per batch size)."""
        return self.measure(self.prepare(arch), input_size=arch.input_size)


LATENCY_MS = Metric("latency_ms", "min", label="latency (ms)", unit="ms", limit=True)
"""Median forward latency at the first batch size; cheap only when predicted from a table. The ``latency``
evaluator is registered in :mod:`.latency_service`, beside its build hook (a search measures through the
service: once per architecture, behind the gate, cached)."""


def measure_ort_latency(model: nn.Module | bytes, *, input_shape: tuple, device: str = "ort-cpu", warmup: int = 10,
                        repeats: int = 30, threads: int | None = 1, rounds: int = 1,
                        what: str = "model") -> dict[str, Any]:
    """Latency statistics (ms) of ``model`` (a module, exported here, or an already serialized ONNX model) run
    by ONNX Runtime on ``device``; the estimator and keys of :func:`measure_latency`.

    A module that cannot be exported raises :class:`space.onnx_export.OnnxExportError` naming ``what``.
    """
    shape = check_shape(input_shape)
    data = model if isinstance(model, bytes) else export_model(model, input_shape=shape, what=what)
    return measure_latency(data, input_shape=shape, device=device, warmup=warmup, repeats=repeats, threads=threads,
                           rounds=rounds)
