"""Timing shared by every latency path (torch, ONNX Runtime, per-unit tables): wall-clock calls with an optional
pre-emption filter, and the statistics reported for them."""
from __future__ import annotations

import resource
import statistics
import time
from typing import Any, Callable

import numpy as np


def check_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints (batch first); ``ValueError`` naming ``latency.input_shape``."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape):
        raise ValueError(f"latency.input_shape: must be a tuple of positive ints like (1, 3, 32, 32), "
                         f"got {input_shape!r}")
    return tuple(input_shape)


def time_calls(run: Callable[[], Any], *, warmup: int, repeats: int, drop_preempted: bool = False) -> list[float]:
    """Wall-clock ms (``time.perf_counter``) of ``repeats`` calls of ``run()`` after ``warmup`` untimed ones.

    ``drop_preempted``: a call during which the kernel preempted this process (``getrusage``'s count of
    involuntary context switches rose) is discarded and replaced, up to ``10 × repeats`` calls; if every call
    was preempted, all are returned (see :func:`evaluators.latency_table.timed` for why).
    """
    for _ in range(warmup):
        run()
    clean: list[float] = []
    every: list[float] = []
    while len(clean) < repeats and len(every) < (10 * repeats if drop_preempted else repeats):
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw if drop_preempted else 0
        start = time.perf_counter()
        run()
        ms = (time.perf_counter() - start) * 1e3
        every.append(ms)
        if not drop_preempted or resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw == switches:
            clean.append(ms)
    return clean or every


def latency_stats(times: list[float]) -> dict[str, float]:
    """``median_ms, mean_ms, p25_ms, p75_ms, iqr_ms, std_ms`` of timed passes (ms)."""
    p25, p50, p75 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(p50), "mean_ms": float(statistics.fmean(times)), "p25_ms": float(p25),
            "p75_ms": float(p75), "iqr_ms": float(p75 - p25),
            "std_ms": float(statistics.stdev(times)) if len(times) > 1 else 0.0}
