"""Pareto math on minimisation vectors: dominance, non-dominated sorting, min–max normalisation, the
reference point, hypervolume and greedy hypervolume-contribution order.

Every function takes objectives already turned into minimisation (maximised ones negated); rows are
points, columns objectives. MO-ASHA (search/schedulers/mo_asha.py), ``nas compare``/``nas report`` and the
benches all compute these quantities here, so a front, a ranking and a hypervolume mean the same
thing everywhere.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

REFERENCE = 1.1
"""Hypervolume reference point on every axis, for objectives min–max normalised to [0, 1]: a point that is
worst in one objective still adds a slab 0.1 thick, so the extremes of a front count."""


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Pareto dominance for minimisation: ``a`` is no worse everywhere and better somewhere (Deb et al. 2002, §II)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated_sort(losses: np.ndarray) -> np.ndarray:
    """Front index of every row of ``losses`` (n × m, minimise all), 0 = non-dominated.

    Deb et al. 2002's fast non-dominated sort (NSGA-II §III-A): domination counts and dominated sets, O(m·n²).
    """
    losses = np.asarray(losses, dtype=float)
    n = len(losses)
    dominated_by = [[] for _ in range(n)]  # i -> the rows i dominates
    count = np.zeros(n, dtype=int)         # how many rows dominate i
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(losses[i], losses[j]):
                dominated_by[i].append(j)
                count[j] += 1
            elif dominates(losses[j], losses[i]):
                dominated_by[j].append(i)
                count[i] += 1
    rank = np.full(n, -1, dtype=int)
    front = [i for i in range(n) if count[i] == 0]
    level = 0
    while front:
        nxt = []
        for i in front:
            rank[i] = level
            for j in dominated_by[i]:
                count[j] -= 1
                if count[j] == 0:
                    nxt.append(j)
        front, level = nxt, level + 1
    return rank


def normalise(points: np.ndarray, *, over: np.ndarray | None = None) -> np.ndarray:
    """``points`` (n × m) with every column min–max scaled by the rows of ``over`` (default: ``points``):
    ``(p − min) / (max − min)``, so ``over``'s best is 0 and worst 1; a constant column is only shifted."""
    points = np.asarray(points, dtype=float)
    over = points if over is None else np.asarray(over, dtype=float)
    lo, hi = over.min(axis=0), over.max(axis=0)
    return (points - lo) / np.where(hi > lo, hi - lo, 1.0)


def reference_point(m: int) -> np.ndarray:
    """The reference point for ``m`` normalised objectives: :data:`REFERENCE` on every axis."""
    return np.full(m, REFERENCE)


def _exact_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact hypervolume (sweeps in 2-D and 3-D, WFG above; While et al. 2012).

    Optuna (5.1) keeps it in the private ``optuna._hypervolume`` and offers no public function, so the
    private import lives here alone: if it moves, this is the one place to change.
    """
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(points, reference))


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: np.ndarray | Sequence[float]) -> float:
    """Exact hypervolume (Zitzler & Thiele 1998) that minimisation ``points`` dominate up to ``reference``;
    points not strictly better than the reference in every coordinate add nothing."""
    reference = np.asarray(reference, dtype=float)
    points = np.asarray(points, dtype=float).reshape(-1, len(reference))
    points = points[np.all(points < reference, axis=1)]
    return _exact_hypervolume(points, reference) if len(points) else 0.0


def greedy_hypervolume_order(points: np.ndarray, reference: np.ndarray, limit: int | None = None) -> list[int]:
    """Greedy hypervolume subset selection: each next row is the one adding the most hypervolume to the
    rows chosen before it (ties: lower index); the first ``limit`` rows (all when None).

    The greedy solution of the hypervolume subset selection problem (Bader & Zitzler 2011, HypE;
    Guerreiro, Fonseca & Paquete 2016 for its (1 − 1/e) guarantee).
    """
    points = np.asarray(points, dtype=float)
    chosen: list[int] = []
    left = list(range(len(points)))
    base = 0.0
    while left and (limit is None or len(chosen) < limit):
        gains = [hypervolume(points[chosen + [i]], reference) - base for i in left]
        k = max(range(len(left)), key=lambda j: (round(gains[j], 12), -left[j]))
        base += gains[k]
        chosen.append(left.pop(k))
    return chosen
