"""The interleaved latency protocol: a candidate timed in alternating rounds with a fixed reference network.

On a shared machine the absolute speed drifts (frequency, the other hyperthread, foreign load) on a scale of
seconds to minutes, far more than passes within a round differ; both networks of a round see the same machine,
so the ratio of their round medians cancels most of that drift. Rounds alternate the order (AB, BA, AB, ...)
so a trend within a round favours neither. Rounds continue until the distribution-free confidence interval of
the median ratio (:func:`median_ci`) is within ``ci`` of it, at least ``min_rounds`` and at most ``max_rounds``
rounds or ``max_seconds``. The reported latency is ``ratio × reference_ms``, the reference's own latency
calibrated once (the plain estimator over :data:`REFERENCE_ROUNDS` rounds) and stored (:class:`ReferenceLatency`),
so numbers measured at different moments against the same stored reference are comparable.
"""
from __future__ import annotations

import json
import logging
import math
import platform
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from space import Arch, wrn

from . import latency_timing
from .latency_cache import LatencyCache
from .latency_timing import Rounds, estimate, round_estimate

log = logging.getLogger(__name__)

PROTOCOLS = ("plain", "interleaved")
REFERENCE = "wrn-16-1"
"""The reference network: the ``wrn-16-1`` preset at the candidate's input size, batch, device and threads."""
REFERENCE_ROUNDS = 7
ROUND_WARMUP, ROUND_REPEATS, MIN_ROUNDS, MAX_ROUNDS = 1, 5, 6, 60
CONFIDENCE = 0.95


def check_protocol(protocol: Any, *, field: str = "latency.protocol") -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"{field}: must be one of {', '.join(PROTOCOLS)}; got {protocol!r}")
    return protocol


def reference_arch(input_size: int) -> Arch:
    """The reference network at ``input_size``."""
    return wrn(16, 1, input_size=input_size)


def reference_key(*, device: str, batch: int, input_size: int, in_chans: int, num_classes: int,
                  threads: int | None) -> str:
    """What the reference's calibrated latency is stored under: the setting, this host and torch version. The one
    key of the measured ``latency`` evaluator, a latency table and the export's re-measure, so all scale by one
    number."""
    import torch

    return json.dumps([REFERENCE, device, batch, input_size, in_chans, num_classes, threads, platform.node(),
                       str(torch.__version__)])


def calibrate_rounds(reference: Rounds, *, warmup: int, repeats: int) -> float:
    """The reference's latency (ms) measured now: the plain estimator (:func:`.latency_timing.estimate`) over
    :data:`REFERENCE_ROUNDS` rounds of ``warmup`` untimed and ``repeats`` timed passes of ``reference``."""
    return estimate([reference(warmup, repeats) for _ in range(REFERENCE_ROUNDS)])


def median_ci(values: Sequence[float], *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics ``x(j) .. x(n+1-j)`` with the largest ``j``
    whose coverage ``1 − 2·P(Binomial(n, ½) < j)`` is at least ``confidence`` (``j = 1``, the range, when none
    reaches it)."""
    x = np.sort(np.asarray(values, dtype=float))
    n = x.size
    if n == 0:
        raise ValueError("median_ci: no values")
    j, below = 1, 0.0  # below: P(Binomial(n, 1/2) <= j - 1)
    while j < (n + 1) // 2:
        below += math.comb(n, j - 1) / 2 ** n
        if 1 - 2 * (below + math.comb(n, j) / 2 ** n) < confidence:
            break
        j += 1
    return float(x[j - 1]), float(x[n - j])


def interleave(candidate: Rounds, reference: Rounds, *, ci: float = 0.02, max_seconds: float = 10.0,
               min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS, warmup: int = ROUND_WARMUP,
               repeats: int = ROUND_REPEATS) -> dict[str, float]:
    """Alternate rounds of ``candidate`` and ``reference`` (see the module docstring).

    Returns ``ratio`` (median of the round ratios), ``ratio_lo``/``ratio_hi`` (its interval), ``rounds``,
    ``seconds`` and the medians of each side's round medians (``candidate_ms``, ``reference_ms``: this moment's
    absolute numbers, for reference only)."""
    return interleave_many({"candidate": candidate}, reference, ci=ci, max_seconds=max_seconds,
                           min_rounds=min_rounds, max_rounds=max_rounds, warmup=warmup, repeats=repeats)["candidate"]


def interleave_many(candidates: Mapping[str, Rounds], reference: Rounds, *, ci: float = 0.02,
                    max_seconds: float = 10.0, min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS,
                    warmup: int = ROUND_WARMUP, repeats: int = ROUND_REPEATS) -> dict[str, dict[str, float]]:
    """:func:`interleave` for several candidates in one session: every round visits each candidate once, each
    beside a reference round of its own (AB in even rounds, BA in odd ones), the candidates' order rotating by
    one per round, so the machine's drift over the session hits every candidate alike. Rounds continue until every
    candidate's interval is within ``ci`` of its ratio (at least ``min_rounds``, at most ``max_rounds``) or
    ``max_seconds`` passed; every candidate gets the same number of rounds. Returns :func:`interleave`'s keys per
    candidate name (``seconds``: the whole session's)."""
    names = list(candidates)
    if not names:
        raise ValueError("interleave_many: no candidates")
    clock = latency_timing.CLOCK
    start = clock.now()
    ratios: dict[str, list[float]] = {n: [] for n in names}
    a_ms: dict[str, list[float]] = {n: [] for n in names}
    b_ms: dict[str, list[float]] = {n: [] for n in names}
    done = 0
    while done < max_rounds:
        for name in names[done % len(names):] + names[:done % len(names)]:
            if done % 2:
                b = round_estimate(reference(warmup, repeats))
                a = round_estimate(candidates[name](warmup, repeats))
            else:
                a = round_estimate(candidates[name](warmup, repeats))
                b = round_estimate(reference(warmup, repeats))
            a_ms[name].append(a)
            b_ms[name].append(b)
            ratios[name].append(a / b)
        done += 1
        if done >= min_rounds:
            narrow = all(_half_width(r) <= ci * float(np.median(r)) for r in ratios.values())
            if narrow or clock.now() - start >= max_seconds:
                break
    seconds = clock.now() - start
    out = {}
    for name in names:
        lo, hi = median_ci(ratios[name])
        out[name] = {"ratio": float(np.median(ratios[name])), "ratio_lo": lo, "ratio_hi": hi, "rounds": done,
                     "seconds": seconds, "candidate_ms": float(np.median(a_ms[name])),
                     "reference_ms": float(np.median(b_ms[name]))}
    return out


def _half_width(ratios: Sequence[float]) -> float:
    lo, hi = median_ci(ratios)
    return (hi - lo) / 2


STALE = 1.25
"""A reference latency found in the machine's store and more than ``STALE`` times a calibration taken now was
calibrated while other work slowed the machine, and is replaced. Idle, calibrations of the reference on this
2-core VM spread by a few percent (docs/latency.md); a load that slows it by a quarter or more is what makes one
stale (2.2× was found on this VM, calibrated during a test run)."""


class ReferenceLatency:
    """The reference's calibrated latency (ms) per setting: looked up in ``stores`` in order (a run's cache first,
    the machine's shared file last), else calibrated once; then written to every store that lacked it, so a run,
    its resumes and its trial processes all scale by the same number. Call it holding the measurement gate.

    A value found in the last store (the machine's, shared by runs; also when it is the only one) is checked
    first: calibrated now too, and when the stored value exceeds :data:`STALE` × this one it was calibrated on a
    loaded machine, so the new one replaces it in every store (logged). A value below what the machine measures
    now is kept: the interleaved ratio cancels a load of the moment, and runs on this machine stay comparable.
    A value found in an earlier store (the run's own) is used as it is: a run's latencies share one scale."""

    def __init__(self, stores: Sequence[LatencyCache] = (), *, recalibrate: bool = False) -> None:
        self.stores = list(stores)
        self.recalibrate = recalibrate  # calibrate afresh (once) and overwrite what the stores hold
        self._memo: dict[str, float] = {}

    def get(self, key: str, calibrate: Callable[[], float]) -> float:
        if key not in self._memo:
            found, missing = None, []
            for store in self.stores:
                found = None if self.recalibrate else store.get_reference(key)
                if found is not None:
                    break
                missing.append(store)
            if found is None:
                found = float(calibrate())
            elif len(missing) == len(self.stores) - 1:  # found in the machine's store: check it
                now = float(calibrate())
                if found > STALE * now:
                    log.warning("reference %s: the stored calibration %.4f ms is %.2f× one taken now (%.4f ms), "
                                "so it was taken on a loaded machine; replaced by the new one", REFERENCE, found,
                                found / now, now)
                    found, missing = now, self.stores
            for store in missing:
                store.put_reference(key, found)
            self._memo[key] = found
        return self._memo[key]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_memo": {}}
