"""search/pareto.py against independent computations: dominance and non-dominated sorting against the
definition (and Optuna's sort), hypervolume against inclusion–exclusion and a seeded Monte-Carlo estimate,
greedy hypervolume order against its definition, normalisation by hand."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from optuna.study._multi_objective import _fast_non_domination_rank

from search.pareto import (
    REFERENCE,
    dominates,
    greedy_hypervolume_order,
    hypervolume,
    non_dominated_sort,
    normalise,
    reference_point,
)


def brute_dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def brute_force_fronts(losses: np.ndarray) -> np.ndarray:
    """Peel the fronts by definition, O(n²) per front: front k = rows no remaining row dominates."""
    rank = np.full(len(losses), -1)
    left, level = set(range(len(losses))), 0
    while left:
        front = {i for i in left if not any(brute_dominates(losses[j], losses[i]) for j in left if j != i)}
        for i in front:
            rank[i] = level
        left -= front
        level += 1
    return rank


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of the boxes [p, ref] by inclusion–exclusion (exponential; small sets only)."""
    total = 0.0
    for r in range(1, len(points) + 1):
        for subset in itertools.combinations(points, r):
            corner = np.max(subset, axis=0)
            total += (-1) ** (r + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


def monte_carlo(points: np.ndarray, ref: np.ndarray, n: int, seed: int) -> tuple[float, float]:
    """Hypervolume estimate and its standard error: the fraction of uniform samples in [min, ref] that some
    point weakly dominates, times the box's volume."""
    lo = points.min(axis=0)
    box = float(np.prod(ref - lo))
    samples = np.random.default_rng(seed).uniform(lo, ref, size=(n, len(ref)))
    hit = np.zeros(n, dtype=bool)
    for p in points:
        hit |= np.all(samples >= p, axis=1)
    frac = hit.mean()
    return box * frac, box * np.sqrt(frac * (1 - frac) / n)


def test_dominates_is_strict():
    assert dominates([0, 1], [0, 2]) and not dominates([0, 2], [0, 1])
    assert not dominates([1, 1], [1, 1])              # equal points do not dominate each other
    assert not dominates([0, 2], [1, 1]) and not dominates([1, 1], [0, 2])
    rng = np.random.default_rng(7)
    for _ in range(200):
        a, b = rng.integers(0, 3, size=(2, 3)).astype(float)
        assert dominates(a, b) == brute_dominates(a, b)


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_non_dominated_sort_matches_brute_force_and_optuna(m):
    rng = np.random.default_rng(m)
    for n in (1, 2, 7, 25):
        for k in range(10):
            if k % 2:   # small ints: many ties and duplicates
                losses = rng.integers(0, 4, size=(n, m)).astype(float)
            else:
                losses = rng.random((n, m))
            ours = non_dominated_sort(losses)
            assert ours.tolist() == brute_force_fronts(losses).tolist()
            assert ours.tolist() == _fast_non_domination_rank(losses).tolist()


def test_hypervolume_by_hand():
    # two minimisation points (1,3) and (2,1) under reference (4,4): boxes 3·1 and 2·3 overlapping in 2·1
    assert hypervolume([[1, 3], [2, 1]], [4, 4]) == pytest.approx(3 + 6 - 2)
    assert hypervolume([[1, 3], [2, 1], [3, 3.5]], [4, 4]) == pytest.approx(7)   # a dominated point adds nothing
    assert hypervolume(np.array([[0, 1], [1, 0]]), np.array([2.0, 2.0])) == pytest.approx(3.0)
    assert hypervolume([[5, 1]], [4, 4]) == 0.0              # outside the reference box: nothing
    assert hypervolume([[4, 1]], [4, 4]) == 0.0              # on its boundary: nothing
    assert hypervolume(np.empty((0, 3)), [1, 1, 1]) == 0.0
    assert hypervolume(np.array([[0.5], [0.2]]), np.array([1.1])) == pytest.approx(0.9)
    assert hypervolume([[0, 0, 0]], reference_point(3)) == pytest.approx(REFERENCE ** 3)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_against_inclusion_exclusion(m):
    rng = np.random.default_rng(m)
    for n in (1, 3, 6, 9):
        for _ in range(4):
            pts = rng.random((n, m))
            ref = reference_point(m)
            assert hypervolume(pts, ref) == pytest.approx(inclusion_exclusion(pts, ref), abs=1e-12)
    pts = rng.integers(0, 3, size=(8, m)).astype(float)   # duplicates and ties
    assert hypervolume(pts, np.full(m, 3.5)) == pytest.approx(inclusion_exclusion(pts, np.full(m, 3.5)), abs=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_against_monte_carlo(m):
    rng = np.random.default_rng(10 + m)
    for n in (5, 20, 40):  # 40 points: far past what inclusion–exclusion can do
        pts = rng.random((n, m))
        pts[:, 0] = 1 - pts[:, 1:].mean(axis=1) + 0.1 * pts[:, 0]  # many of them near a trade-off curve
        ref = np.full(m, 1.3)
        estimate, se = monte_carlo(pts, ref, n=200_000, seed=n)
        assert abs(hypervolume(pts, ref) - estimate) < 5 * se + 1e-9


def test_normalise_by_hand():
    pts = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0], [2.0, 20.0, 5.0]])
    assert normalise(pts).tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.5, 0.5, 0.0]]  # constant column: 0
    over = np.array([[0.0, 0.0, 4.0], [4.0, 40.0, 6.0]])
    assert normalise(pts, over=over).tolist() == [[0.25, 0.25, 0.5], [0.75, 0.75, 0.5], [0.5, 0.5, 0.5]]
    assert reference_point(2).tolist() == [REFERENCE, REFERENCE]


def test_greedy_hypervolume_order_against_its_definition():
    rng = np.random.default_rng(1)
    for m in (2, 3):
        for _ in range(5):
            pts = rng.random((6, m))
            ref = reference_point(m)
            chosen, left = [], list(range(6))
            while left:  # the definition, with the inclusion–exclusion hypervolume
                hv = [round(inclusion_exclusion(pts[chosen + [i]], ref), 9) for i in left]
                chosen.append(left.pop(max(range(len(left)), key=lambda j: (hv[j], -left[j]))))  # ties: lower index
            assert greedy_hypervolume_order(pts, ref) == chosen
            assert greedy_hypervolume_order(pts, ref, limit=2) == chosen[:2]
    # a duplicate adds nothing: it comes after every point that adds something
    assert greedy_hypervolume_order(np.array([[0.5, 0.5], [0.5, 0.5], [0.0, 1.0]]), reference_point(2)) == [0, 2, 1]
