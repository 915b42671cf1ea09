"""Time one MO-ASHA decision on a rung of 5,000 recorded results, against the ranking it replaced.

    .venv/bin/python bench/mo_asha_rank.py [--n 5000] [--objectives 2,3] [--eta 3] [--repeats 7] [--old-n 1000]

A rung of ``--n`` results (uniform random objectives, seeded) is filled as the scheduler records them; then
``--repeats`` fresh results, each decided on its own copy of that rung, are timed (median wall-clock ms) for
every ranking. The old implementation (a fresh pure-Python non-dominated sort of the whole rung, then greedy
hypervolume order inside each front up to the ``⌈n/η⌉`` kept) is kept here only, and timed once beside the new
one (epsnet, the default) on a rung of ``--old-n`` results (0: skip it), with the ratio old / new. Its O(n²)
Python sort makes 5,000 slow (minutes for 2 objectives; the 3-objective hypervolume order, far longer).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def old_rank_order(losses: np.ndarray, limit: int) -> list[int]:
    """The ranking MO-ASHA used before: row indices best first, the first ``limit``."""
    from search.pareto import greedy_hypervolume_order, non_dominated_sort, normalise, reference_point

    finite = np.flatnonzero(np.all(np.isfinite(losses), axis=1))
    sub = losses[finite]
    norm, reference = normalise(sub), reference_point(sub.shape[1])
    fronts, out = non_dominated_sort(sub), []
    for f in range(int(fronts.max()) + 1):
        if len(out) >= limit:
            break
        members = np.flatnonzero(fronts == f)
        out.extend(int(finite[members[i]]) for i in greedy_hypervolume_order(norm[members], reference,
                                                                            limit - len(out)))
    return out[:limit]


def filled(n: int, m: int, eta: float, ranking: str, rng: np.random.Generator):
    from search.schedulers.mo_asha import MOASHAScheduler

    s = MOASHAScheduler(objectives=[f"o{k}" for k in range(m)], modes=["min"] * m, max_t=2, reduction_factor=eta,
                        ranking=ranking)
    for i, row in enumerate(rng.random((n, m))):  # recorded as decide records them, without deciding
        s.rungs[0][f"t{i}"] = row
        s.fronts[0].add(row)
    return s


def time_new(base, arrivals: np.ndarray) -> tuple[float, float]:
    """Median and max ms of one decision of each arrival on its own copy of ``base``."""
    times = []
    for i, row in enumerate(arrivals):
        s = copy.deepcopy(base)
        start = time.perf_counter()
        s.decide(f"new{i}", 1, row)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> None:
    from search.schedulers.mo_rank import RANKINGS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--objectives", default="2,3")
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--old-n", type=int, default=1000)
    args = p.parse_args(argv)
    for m in (int(v) for v in args.objectives.split(",")):
        arrivals = np.random.default_rng(m).random((args.repeats, m))
        start = time.perf_counter()
        base = filled(args.n, m, args.eta, "epsnet", np.random.default_rng([m, 1]))
        print(f"m={m} n={args.n}: {int(base.fronts[0].front.max()) + 1} fronts (filling the rung took "
              f"{time.perf_counter() - start:.1f} s)", flush=True)
        for ranking in RANKINGS:
            base.ranking = ranking
            med, worst = time_new(base, arrivals)
            print(f"m={m} n={args.n} {ranking:11s}: {med:8.2f} ms per decision (median of {args.repeats}, "
                  f"max {worst:.2f})", flush=True)
        if args.old_n:
            losses = np.random.default_rng([m, 2]).random((args.old_n, m))
            new, _ = time_new(filled(args.old_n, m, args.eta, "epsnet", np.random.default_rng([m, 2])), arrivals)
            start = time.perf_counter()
            old_rank_order(np.vstack([losses, arrivals[:1]]), math.ceil((args.old_n + 1) / args.eta))
            old = (time.perf_counter() - start) * 1e3
            print(f"m={m} n={args.old_n} old (pure-Python sort + hypervolume): {old:10.1f} ms per decision, "
                  f"new (epsnet) {new:.2f} ms: old/new = {old / new:.0f}x", flush=True)

if __name__ == "__main__":
    main()
