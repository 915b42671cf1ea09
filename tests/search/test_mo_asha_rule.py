"""MO-ASHA's rung rule against a brute-force re-implementation of the reference rule (Syne Tune's MOASHA:
rank = share of the rung's results ranked strictly before the arriving one, stop iff it exceeds 1/η), and
the orders inside a front against their definitions (NSGA-II crowding distance, ε-net)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from search.pareto import greedy_hypervolume_order, reference_point
from search.schedulers.mo_asha import MOASHAScheduler
from search.schedulers.mo_rank import RANKINGS, RungFronts, crowding_distance, crowding_order, epsnet_order

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


# ---------------------------------------------------------------- the reference rule, brute force

def _dominates(a: tuple, b: tuple) -> bool:
    return all(x <= y for x, y in zip(a, b)) and a != b


def _fronts(points: list[tuple]) -> list[list[int]]:
    """Non-dominated sorting by peeling: front 0 = the points no remaining point dominates, and so on."""
    left, fronts = list(range(len(points))), []
    while left:
        front = [i for i in left if not any(_dominates(points[j], points[i]) for j in left)]
        fronts.append(front)
        left = [i for i in left if i not in front]
    return fronts


def _epsnet(points: list[tuple]) -> list[int]:
    chosen = [min(range(len(points)), key=lambda i: (points[i][0], i))]
    while len(chosen) < len(points):
        rest = [i for i in range(len(points)) if i not in chosen]
        far = {i: min(math.dist(points[i], points[c]) for c in chosen) for i in rest}
        chosen.append(max(rest, key=lambda i: (round(far[i], 12), -i)))  # equal to 12 decimals: a tie
    return chosen


def _crowding(points: list[tuple]) -> list[int]:
    s, d = len(points), [0.0] * len(points)
    for k in range(len(points[0])):
        by = sorted(range(s), key=lambda i: (points[i][k], i))
        d[by[0]] = d[by[-1]] = math.inf
        for prev, i, nxt in zip(by, by[1:], by[2:]):
            d[i] += points[nxt][k] - points[prev][k]
    return sorted(range(s), key=lambda i: (-round(d[i], 12), i))


def _in_front(points: list[tuple], ranking: str) -> list[int]:
    if ranking == "epsnet":
        return _epsnet(points)
    if ranking == "crowding":
        return _crowding(points)
    return greedy_hypervolume_order(np.array(points), reference_point(len(points[0])))  # tested in test_pareto


def reference_decision(losses: list[tuple], eta: float, ranking: str) -> str:
    """The decision for the last of ``losses`` (all results at the rung, in arrival order, minimise all)."""
    n, me = len(losses), len(losses) - 1
    finite = [i for i in range(n) if all(math.isfinite(v) for v in losses[i])]
    if me not in finite:
        better = len(finite)
    else:
        lo = [min(losses[i][k] for i in finite) for k in range(len(losses[me]))]
        hi = [max(losses[i][k] for i in finite) for k in range(len(losses[me]))]
        scale = [h - low if h > low else 1.0 for low, h in zip(lo, hi)]
        fronts = _fronts([losses[i] for i in finite])
        f = next(j for j, fr in enumerate(fronts) if finite.index(me) in fr)
        better = sum(len(fr) for fr in fronts[:f])
        members = [finite[i] for i in fronts[f]]
        distinct = list(dict.fromkeys(losses[i] for i in sorted(members)))  # first appearance order
        scaled = [tuple((v - low) / sc for v, low, sc in zip(p, lo, scale)) for p in distinct]
        order = [distinct[i] for i in _in_front(scaled, ranking)]
        for vector in order[:order.index(losses[me])]:
            better += sum(losses[i] == vector for i in members)
    return STOP if better / n > 1 / eta else CONTINUE


def _random_rung(rng: np.random.Generator, n: int, m: int) -> list[tuple]:
    """``n`` loss vectors on a coarse grid (many ties and duplicates), columns on very different scales,
    now and then a NaN."""
    grid = rng.integers(0, 4, size=(n, m)).astype(float) * np.array([1.0, 1e6, 0.01][:m])
    grid[rng.random((n, m)) < 0.03] = np.nan
    return [tuple(row) for row in grid]


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("eta", [2, 3])
def test_decisions_match_the_reference_rule_on_random_rungs(m, eta):
    """Every arrival at a rung of up to 20 results decides as the brute-force reference rule, for each
    ranking; the rankings themselves disagree somewhere (the option matters)."""
    by_ranking = {}
    for ranking in RANKINGS:
        ours, ref = [], []
        for seed, n in itertools.product(range(6), range(1, 21)):
            losses = _random_rung(np.random.default_rng([seed, n, m, eta]), n, m)
            s = MOASHAScheduler(objectives=[f"o{k}" for k in range(m)], modes=["min"] * m, max_t=3,
                                reduction_factor=eta, ranking=ranking)
            for i, loss in enumerate(losses):
                ours.append(s.decide(f"t{i}", 1, loss))
                ref.append(reference_decision([tuple(math.inf if math.isnan(v) else v for v in x)
                                               for x in losses[:i + 1]], eta, ranking))
        assert ours == ref, ranking
        assert STOP in ours and CONTINUE in ours
        by_ranking[ranking] = ours
    assert len({tuple(v) for v in by_ranking.values()}) > 1


def test_the_threshold_as_the_reference_computes_it():
    """One objective: with n = kη results the best k + 1 places continue; fewer than η results: anything
    behind the best stops at η = 3; a value equal to the rung's best continues."""
    s = MOASHAScheduler(objectives=["val_acc"], modes=["max"], max_t=3, reduction_factor=2)
    decisions = [s.decide(t, 1, [v]) for t, v in zip("abcdef", [0.5, 0.4, 0.3, 0.45, 0.2, 0.6])]
    #            n=1 first  n=2 b=1  n=3 b=2   n=4 b=2 (k=2: 3 places)  n=5 b=4  n=6 b=0
    assert decisions == [CONTINUE, CONTINUE, STOP, CONTINUE, STOP, CONTINUE]
    s = MOASHAScheduler(objectives=["val_acc", "macs"], modes=["max", "min"], max_t=3, reduction_factor=3)
    assert [s.decide(t, 1, v) for t, v in [("a", [0.5, 2.0]), ("b", [0.5, 2.0]), ("c", [0.4, 2.0]),
                                           ("d", [0.5, 2.0])]] == [CONTINUE, CONTINUE, STOP, CONTINUE]


# ---------------------------------------------------------------- orders inside a front, by definition

def test_crowding_distance_hand_computed():
    """Deb et al. 2002 §III-B on a five-point front (objective gaps over the objective's range, summed):
    sorted by f1 the neighbours of (2, 600) are (0, 1000) and (5, 400): (5 − 0)/10 + (1000 − 400)/1000 = 1.1."""
    raw = np.array([[0, 1000], [2, 600], [5, 400], [6, 100], [10, 0]], dtype=float)
    scaled = (raw - raw.min(axis=0)) / (raw.max(axis=0) - raw.min(axis=0))
    np.testing.assert_allclose(crowding_distance(scaled), [math.inf, 1.1, 0.9, 0.9, math.inf])
    assert crowding_order(scaled) == [0, 4, 1, 2, 3]
    # the rung ranks the same front the same way from the raw values (normalised over the rung)
    fronts = RungFronts(2)
    rows = [fronts.add(p) for p in raw]
    assert [fronts.better_than(r, "crowding") for r in rows] == [0, 2, 3, 4, 1]


def test_epsnet_is_the_greedy_farthest_point_order():
    line = np.array([[0, 3], [1, 2], [2, 1], [3, 0]], dtype=float)
    assert epsnet_order(line) == [0, 3, 1, 2]  # 1 and 2 tie at √2 from {0, 3}: the lower index
    rng = np.random.default_rng(0)
    for _ in range(20):
        pts = rng.random((12, 3))
        order = epsnet_order(pts)
        assert sorted(order) == list(range(12)) and order[0] == int(np.argmin(pts[:, 0]))
        for k in range(1, 12):  # each next point is the one farthest from those chosen before it
            gap = [min(np.linalg.norm(pts[i] - pts[c]) for c in order[:k]) for i in range(12) if i not in order[:k]]
            assert min(np.linalg.norm(pts[order[k]] - pts[c]) for c in order[:k]) == pytest.approx(max(gap))


def test_fronts_stay_those_of_a_fresh_sort_as_rows_arrive():
    """The incremental fronts equal a from-scratch peel after every arrival (rows pushed down by a
    dominating newcomer, cascades, duplicates, non-finite rows)."""
    rng = np.random.default_rng(1)
    for m in (2, 3):
        losses = rng.integers(0, 5, size=(60, m)).astype(float)
        losses[rng.random(60) < 0.05, 0] = math.inf
        fronts = RungFronts(m)
        for i, loss in enumerate(losses):
            fronts.add(loss)
            finite = [j for j in range(i + 1) if np.all(np.isfinite(losses[j]))]
            expected = np.full(i + 1, -1)
            for level, fr in enumerate(_fronts([tuple(losses[j]) for j in finite])):
                expected[[finite[j] for j in fr]] = level
            assert fronts.front.tolist() == expected.tolist()


def test_unknown_ranking_is_named():
    with pytest.raises(ValueError, match="^ranking: must be one of epsnet, crowding, hypervolume, got 'nsga'"):
        MOASHAScheduler(objectives=["a"], modes=["min"], max_t=3, ranking="nsga")
