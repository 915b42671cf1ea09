"""Timing shared by every latency path (torch, ONNX Runtime, per-unit tables) and the one estimator they report.

A *pass* is one timed call: its wall-clock ms and whether the kernel preempted this process during it. The
estimator (:func:`estimate`), used by the measured evaluator, the per-unit table and the interleaved protocol
alike: per round, the median of the passes that were not preempted (all of them if every one was); over rounds,
the median of those round medians. On a shared machine a pass longer than the scheduler's slice absorbs other
processes' slices (here, at load average 10 on 2 cores, a 2.3 ms network measured 7 ms with 1.3 preemptions per
pass), so such passes say nothing about the network; a round that coincides with a burst of foreign work is
outvoted by the other rounds rather than picked (the minimum over rounds, which ``timeit`` takes, falls with the
number of rounds).
"""
from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Pass:
    """One timed call: wall-clock ``ms`` and whether it was ``preempted``."""

    ms: float
    preempted: bool = False


class SystemClock:
    """``now()``: ``time.perf_counter`` seconds; ``preemptions()``: this process's involuntary context switches
    (``getrusage``'s ``ru_nivcsw``), which rise when the kernel takes the CPU away mid-call."""

    def now(self) -> float:
        return time.perf_counter()

    def preemptions(self) -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


CLOCK: Any = SystemClock()
"""The clock every CPU pass is timed with (tests replace it with one whose timings they script)."""

Rounds = Callable[[int, int], list[Pass]]
"""``rounds(warmup, repeats) -> passes``: one round of a prepared model (see :func:`time_passes`)."""


def check_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints (batch first); ``ValueError`` naming ``latency.input_shape``."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) < 2 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in input_shape):
        raise ValueError(f"latency.input_shape: must be a tuple of positive ints like (1, 3, 32, 32), "
                         f"got {input_shape!r}")
    return tuple(input_shape)


def time_passes(run: Callable[[], Any], *, warmup: int, repeats: int, clock: Any = None) -> list[Pass]:
    """``run()`` ``warmup`` times untimed, then timed until ``repeats`` passes were not preempted or
    ``10 × repeats`` were timed; every timed pass is returned, flagged."""
    clock = clock or CLOCK
    for _ in range(warmup):
        run()
    passes: list[Pass] = []
    clean = 0
    while clean < repeats and len(passes) < 10 * repeats:
        switches = clock.preemptions()
        start = clock.now()
        run()
        ms = (clock.now() - start) * 1e3
        preempted = clock.preemptions() != switches
        passes.append(Pass(ms, preempted))
        clean += not preempted
    return passes


def kept(passes: Sequence[Pass]) -> list[float]:
    """The ms of the passes that were not preempted; all of them if every pass was."""
    clean = [p.ms for p in passes if not p.preempted]
    return clean or [p.ms for p in passes]


def round_estimate(passes: Sequence[Pass]) -> float:
    """One round's number: the median of its kept passes (:func:`kept`)."""
    if not passes:
        raise ValueError("latency: a round has no timed passes")
    return float(np.median(kept(passes)))


def estimate(rounds: Sequence[Sequence[Pass]]) -> float:
    """The latency estimator (ms): the median over rounds of each round's median of kept passes."""
    if not rounds:
        raise ValueError("latency: no rounds were timed")
    return float(np.median([round_estimate(r) for r in rounds]))


def latency_stats(times: list[float]) -> dict[str, float]:
    """``median_ms, mean_ms, p25_ms, p75_ms, iqr_ms, std_ms`` of timed passes (ms)."""
    p25, p50, p75 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(p50), "mean_ms": float(statistics.fmean(times)), "p25_ms": float(p25),
            "p75_ms": float(p75), "iqr_ms": float(p75 - p25),
            "std_ms": float(statistics.stdev(times)) if len(times) > 1 else 0.0}


def rounds_stats(rounds: Sequence[Sequence[Pass]]) -> dict[str, Any]:
    """:func:`latency_stats` of every kept pass, with ``median_ms`` the estimator's (:func:`estimate`) and
    ``rounds``, ``timed`` (passes timed) and ``preempted`` (passes discarded) counts."""
    every = [p for r in rounds for p in r]
    kept_ms = [ms for r in rounds for ms in kept(r)]
    return {**latency_stats(kept_ms), "median_ms": estimate(rounds), "rounds": len(rounds), "timed": len(every),
            "preempted": len(every) - len(kept_ms)}
