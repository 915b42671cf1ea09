"""Ranking one MO-ASHA rung: fronts kept up to date as results arrive, and the orders inside a front.

A rung's results are loss vectors (minimise every column). :class:`RungFronts` holds them with the
non-dominated-sorting front of every row (Deb et al. 2002, NSGA-II §III-A: front 0 is dominated by no
row, front k by rows of fronts < k only) and updates the fronts in place when a row arrives, so a
decision costs O(n·m) numpy work plus the work inside one front rather than a fresh O(m·n²) sort:

- the new row's front is one past the highest front of the rows dominating it (0 if none);
- only rows it dominates can move, each by one front at most: the rows of its own front that it
  dominates move down one, then the rows of the next front dominated by a moved row, and so on
  (the insertion step of incremental non-dominated sorting, as in Li, Deb et al. 2016's ENLU).

Rows with a non-finite loss (a diverged accuracy) take part in no front: they rank after every finite row.

Inside a front, :data:`RANKINGS` name three orders of its distinct vectors, best first, on the
objectives min–max normalised over the rung's finite rows (so MACs in millions do not swamp an
accuracy in [0, 1]); every tie (equal to 12 decimals) goes to the vector recorded first:

- ``epsnet``: an ε-net (Clarkson 2006, the greedy farthest-point order; Salinas et al. 2021, Syne Tune's
  MO-ASHA default): start at the lowest first objective, then repeatedly the point farthest (Euclidean)
  from the points already chosen;
- ``crowding``: NSGA-II's crowding distance (Deb et al. 2002 §III-B), largest first: per objective the
  two extreme points get ∞ and every other point the gap between its neighbours, summed over objectives;
- ``hypervolume``: greedy hypervolume contribution (search/pareto.py, reference point 1.1). It takes
  O(s²) exact hypervolumes for a front of s points: fine for the rungs of a search of hundreds of trials,
  but a decision in a 140-point front (5,000 three-objective results) can take over a minute.

The in-front order is computed only when the fronts alone do not decide, and only as far as the place
that decides (bench/mo_asha_rank.py: ~1–2 ms per decision at 5,000 results with ``epsnet``).
"""
from __future__ import annotations

import math

import numpy as np

from ..pareto import greedy_hypervolume_order, reference_point

RANKINGS = ("epsnet", "crowding", "hypervolume")
_DIGITS = 12  # distances equal to this many decimals tie (rounding noise must not pick the winner)


def epsnet_order(points: np.ndarray, limit: int | None = None) -> list[int]:
    """Greedy farthest-point order of ``points`` (s × m): first the lowest first coordinate, then each next
    point the one whose distance to its nearest chosen point is largest (ties: lower index); the first
    ``limit`` (all when None)."""
    points = np.asarray(points, dtype=float)
    s = len(points) if limit is None else min(limit, len(points))
    if s <= 0:
        return []
    first = int(np.argmin(points[:, 0]))
    order = [first]
    nearest = np.linalg.norm(points - points[first], axis=1)
    nearest[first] = -1.0
    for _ in range(s - 1):
        k = int(np.argmax(np.round(nearest, _DIGITS)))  # the lowest index among equal distances
        order.append(k)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[k], axis=1))
        nearest[order] = -1.0
    return order


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row of ``points`` (one front, s × m, already scaled): per objective,
    sorted ascending (ties: lower index first), the first and last rows get ∞ and each other row
    ``points[next] − points[prev]``; the distance is the sum over objectives."""
    points = np.asarray(points, dtype=float)
    s, m = points.shape
    distance = np.zeros(s)
    if s == 0:
        return distance
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        distance[order[[0, -1]]] = np.inf
        if s > 2:
            inner = order[1:-1]
            distance[inner] += points[order[2:], k] - points[order[:-2], k]
    return distance


def crowding_order(points: np.ndarray) -> list[int]:
    """Rows of ``points`` by crowding distance, largest first (ties: lower index)."""
    return np.argsort(-np.round(crowding_distance(points), _DIGITS), kind="stable").tolist()


def in_front_order(points: np.ndarray, ranking: str, limit: int | None = None) -> list[int]:
    """Order of the distinct, normalised ``points`` of one front by ``ranking`` (one of :data:`RANKINGS`),
    the first ``limit`` (all when None)."""
    if ranking == "epsnet":
        return epsnet_order(points, limit)
    if ranking == "crowding":
        return crowding_order(points)[:limit]
    if ranking == "hypervolume":
        return greedy_hypervolume_order(points, reference_point(points.shape[1]), limit)
    raise ValueError(f"ranking: must be one of {', '.join(RANKINGS)}, got {ranking!r}")


class RungFronts:
    """The loss vectors recorded at one rung (row = arrival order) with their fronts, kept current."""

    def __init__(self, m: int) -> None:
        self.losses = np.empty((0, m))
        self.front = np.empty(0, dtype=int)  # -1 for a non-finite row

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: np.ndarray) -> int:
        """Record ``loss`` (minimise every entry) as the next row, update every front; its row index."""
        loss = np.asarray(loss, dtype=float)
        front = -1
        if np.all(np.isfinite(loss)):
            rows = np.flatnonzero(self.front >= 0)
            mine = self.losses[rows]
            equal = np.all(mine == loss, axis=1)
            above = rows[np.all(mine <= loss, axis=1) & ~equal]  # the rows dominating the new one
            front = int(self.front[above].max()) + 1 if len(above) else 0
            below = rows[np.all(mine >= loss, axis=1) & ~equal]  # the rows it dominates
            self._push_down(below[self.front[below] == front], front)
        self.losses = np.vstack([self.losses, loss])
        self.front = np.append(self.front, front)
        return len(self.losses) - 1

    def _push_down(self, moved: np.ndarray, level: int) -> None:
        """Move the rows ``moved`` (all on front ``level``) to ``level + 1``, then whatever that displaces."""
        while len(moved):
            nxt = np.flatnonzero(self.front == level + 1)
            if len(nxt):
                a, b = self.losses[moved][:, None, :], self.losses[nxt][None, :, :]
                hit = (np.all(a <= b, axis=2) & np.any(a < b, axis=2)).any(axis=0)
                nxt = nxt[hit]
            self.front[moved] = level + 1
            moved, level = nxt, level + 1

    def better_than(self, row: int, ranking: str, *, enough: int | None = None) -> int:
        """How many rows rank strictly before ``row``: every row of an earlier front, then the rows of its
        front whose vector comes before its own in the ``ranking`` order (equal vectors share a place);
        a non-finite row comes after every finite one. With ``enough``, a count above it may come back as
        ``enough + 1`` (the in-front order is then cut short)."""
        before, members, same = self._place(row)
        if members is None or same.all():
            return before
        first_of, inverse = _distinct(self.losses[members])
        finite = self.front >= 0
        lo, hi = self.losses[finite].min(axis=0), self.losses[finite].max(axis=0)
        scaled = (self.losses[members[first_of]] - lo) / np.where(hi > lo, hi - lo, 1.0)
        limit = None if enough is None else max(enough - before, 0) + 1  # each vector ahead is ≥ 1 row
        order = in_front_order(scaled, ranking, limit)
        mine = inverse[int(np.flatnonzero(members == row)[0])]
        if mine not in order:
            return enough + 1
        counts = np.bincount(inverse, minlength=len(first_of))
        return before + int(counts[order[:order.index(mine)]].sum())

    def continues(self, row: int, ranking: str, reduction_factor: float) -> bool:
        """The rung rule: ``row`` continues unless the share of rows ranked strictly before it exceeds 1/η;
        the order inside its front is computed only when the fronts alone do not decide."""
        n, cut = len(self), 1 / reduction_factor
        before, members, same = self._place(row)
        if before / n > cut:
            return False
        if members is None or (before + len(members) - int(same.sum())) / n <= cut:
            return True
        most = math.floor(n * cut)  # the most rows ahead that still continue, by the same float test
        while (most + 1) / n <= cut:
            most += 1
        while most / n > cut:
            most -= 1
        return not self.better_than(row, ranking, enough=most) / n > cut

    def _place(self, row: int) -> tuple[int, np.ndarray | None, np.ndarray]:
        """Rows in earlier fronts than ``row`` (all finite rows for a non-finite one), the rows of its
        front (None for a non-finite row) and which of them equal it."""
        f = self.front[row]
        if f < 0:
            return int(np.count_nonzero(self.front >= 0)), None, np.ones(1, dtype=bool)
        members = np.flatnonzero(self.front == f)
        same = np.all(self.losses[members] == self.losses[row], axis=1)
        return int(np.count_nonzero((self.front >= 0) & (self.front < f))), members, same


def _distinct(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct vectors of ``rows`` in order of first appearance: the row index of each one's first
    appearance, and for every row the index of its vector in that list."""
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    by_arrival = np.argsort(first, kind="stable")
    relabel = np.empty_like(by_arrival)
    relabel[by_arrival] = np.arange(len(by_arrival))
    return first[by_arrival], relabel[np.asarray(inverse).reshape(-1)]
