"""A trial's latency: measured once per architecture behind the gate (:mod:`.latency_gate`), cached
(:mod:`.latency_cache`), or predicted.

``mode: predict`` sums a per-unit table (:mod:`evaluators.latency_table`): cheap,
so it may carry the hard constraint ``constraints.max_latency_ms``. :class:`RunLatency` is what a search
builds for the ``latency_ms`` metric (:func:`latency_for_run`, the ``latency`` evaluator's build hook).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable

from space import Arch

from .base import RunContext, register_evaluator
from .latency import LATENCY_MS, LatencyEvaluator
from .latency_cache import LatencyCache
from .latency_gate import MeasureGate, user_lock_dir
from .latency_protocol import ReferenceLatency

_MEMO: dict[str, dict[str, float]] = {}
REFERENCE_FILE = "latency-reference.sqlite"

Measure = Callable[[Arch, int, int], dict[str, float]]
"""``measure(arch, in_chans, num_classes) -> metrics``: the expensive measurement (injectable in tests)."""


class LatencyService:
    """A trial's latency: ``evaluate(arch, in_chans=, num_classes=)`` and the ``training()`` gate.

    Picklable: it holds the config, paths and, in predict mode, the table's data; files and locks are
    opened per use.
    """

    def __init__(self, lat: Any, *, cache_path: str | Path | None = None, gate: MeasureGate | None = None,
                 table: Any = None, measure: Measure | None = None) -> None:
        if lat.mode == "predict" and table is None:
            raise ValueError("latency.table: predict mode needs a table (build one with `nas latency-table`)")
        self.lat = lat
        self.cache = LatencyCache(cache_path) if cache_path is not None and lat.mode == "measure" else None
        self.gate = gate
        self.table = table
        self._measure_fn = measure
        self._predictor: Any = None
        self.references = ReferenceLatency(self._reference_stores()) if lat.mode == "measure" and \
            lat.protocol == "interleaved" else None

    def _reference_stores(self) -> list[LatencyCache]:
        """Where the interleaved protocol's reference latency is kept: the run's cache (so the run and its resumes
        scale by one number), then the machine's file in ``lock_dir`` (so runs on this machine share it)."""
        folder = Path(self.lat.lock_dir) if self.lat.lock_dir is not None else user_lock_dir()
        return [*([self.cache] if self.cache is not None else []), LatencyCache(folder / REFERENCE_FILE)]

    @classmethod
    def from_settings(cls, lat: Any, *, cache_path: str | Path | None = None) -> LatencyService:
        """From the search config's ``latency:`` section; a search builds this only when it needs latency,
        so only a search that measures latency joins the gate: others neither wait nor make anyone wait."""
        from .latency_table import LatencyTable

        gate = MeasureGate.for_device(lat.device, lat.lock_dir) if lat.isolate and lat.mode == "measure" else None
        table = LatencyTable.load(lat.table) if lat.mode == "predict" else None
        return cls(lat, cache_path=Path(cache_path).resolve() if cache_path else None, gate=gate, table=table)

    @property
    def cheap(self) -> bool:
        return self.lat.mode == "predict"

    def _context(self) -> contextlib.AbstractContextManager:
        return self.gate.measuring() if self.gate is not None else contextlib.nullcontext()

    def training(self) -> contextlib.AbstractContextManager:
        """Context for a trial's training: passes the gate at every batch when ``latency.isolate``."""
        return self.gate.training() if self.gate is not None else contextlib.nullcontext()

    def key(self, arch: Arch, *, in_chans: int, num_classes: int) -> str:
        lat = self.lat
        return json.dumps([arch.arch_id, lat.device, list(lat.batch_sizes), arch.input_size, in_chans, num_classes,
                           lat.threads, lat.protocol])

    def evaluate(self, arch: Arch, *, in_chans: int, num_classes: int) -> dict[str, float]:
        if self.lat.mode == "predict":
            return self._predict(arch, in_chans, num_classes)
        key = self.key(arch, in_chans=in_chans, num_classes=num_classes)
        if key not in _MEMO:
            found = self.cache.get(key) if self.cache is not None else None
            if found is None:
                measure = self._prepare(arch, in_chans, num_classes)  # building (and exporting) needs no quiet device
                with self._context():
                    found = self.cache.get(key) if self.cache is not None else None  # a racing trial may have won
                    if found is None:
                        found = measure()
                        if self.cache is not None:
                            self.cache.put(key, arch.arch_id, found)
            _MEMO[key] = found
        return dict(_MEMO[key])

    def _prepare(self, arch: Arch, in_chans: int, num_classes: int) -> Callable[[], dict[str, float]]:
        """The measurement of ``arch`` as a zero-argument call, its model built (and exported for ONNX Runtime)."""
        if self._measure_fn is not None:
            fn = self._measure_fn
            return lambda: fn(arch, in_chans, num_classes)
        lat = self.lat
        ev = LatencyEvaluator(num_classes=num_classes, in_chans=in_chans, device=lat.device,
                              batch_sizes=tuple(lat.batch_sizes), warmup=lat.warmup, repeats=lat.repeats,
                              threads=lat.threads, protocol=lat.protocol, ci=lat.ci, max_seconds=lat.max_seconds,
                              references=self.references)
        prepared = ev.prepare(arch)
        return lambda: ev.measure(prepared, input_size=arch.input_size)

    def _predict(self, arch: Arch, in_chans: int, num_classes: int) -> dict[str, float]:
        from .latency_table import PredictedLatencyEvaluator

        if self._predictor is None:
            self._predictor = PredictedLatencyEvaluator(table=self.table, in_chans=in_chans, num_classes=num_classes,
                                                        context=self._context)
        return self._predictor.evaluate(arch)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_predictor": None}


class RunLatency:
    """The search's latency evaluator: ``latency_ms`` (and ``latency_ms_b{B}``...) of an architecture through
    a :class:`LatencyService` for the run's image channels and classes, and ``latency_device`` (the config's
    ``latency.device``, recorded with the trial, and in measure mode ``latency_protocol``); cheap in predict mode."""

    name = "latency"

    def __init__(self, service: LatencyService, *, in_chans: int, num_classes: int) -> None:
        self.service, self.in_chans, self.num_classes = service, in_chans, num_classes
        if service.table is not None:
            from .latency_table import LatencyPredictor

            LatencyPredictor(service.table).check_problem(in_chans=in_chans, num_classes=num_classes)

    @property
    def cheap(self) -> bool:
        return self.service.cheap

    def training(self) -> contextlib.AbstractContextManager:
        """The gate's training context (see :meth:`LatencyService.training`)."""
        return self.service.training()

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (one measurement or lookup per architecture)."""
        lat = self.service.lat
        return {**self.service.evaluate(arch, in_chans=self.in_chans, num_classes=self.num_classes),
                "latency_device": lat.device, **({"latency_protocol": lat.protocol} if lat.mode == "measure" else {})}


def latency_for_run(ctx: RunContext) -> RunLatency:
    """Build hook of the ``latency`` evaluator: ``ctx.settings`` is the config's ``latency:`` section; measured
    results are cached in ``ctx.cache_dir/latency_cache.sqlite``. A predict-mode table built for another
    number of channels or classes raises ``ValueError``."""
    cache = ctx.cache_dir / "latency_cache.sqlite" if ctx.cache_dir is not None else None
    return RunLatency(LatencyService.from_settings(ctx.settings, cache_path=cache), in_chans=ctx.in_chans,
                      num_classes=ctx.num_classes)


register_evaluator("latency", LatencyEvaluator, metrics=[LATENCY_MS], build=latency_for_run, settings="latency",
                   cheap_when=lambda lat: lat.mode == "predict",
                   cheap_hint="set latency.mode: predict with a table from `nas latency-table`",
                   example=lambda: {"num_classes": 10, "in_chans": 1, "warmup": 1, "repeats": 3})
