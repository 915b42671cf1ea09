"""``nas bench-space nb201``: the per-cell MAC table, the hypervolume, and a real (small) run of the command."""
from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from evaluators.nb201_table import MISSING, PACKAGE, load_nb201_table
from search.bench_space import cell_counts, hypervolume
from space import build_model, nb201
from space.blocks.nb201 import NB201_OPS
from space.complexity import count_complexity

ROOT = Path(__file__).resolve().parents[2]
needs_table = pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None, reason=MISSING)


def test_the_committed_counts_match_direct_counts_of_random_cells():
    counts = cell_counts()
    rng = random.Random(0)
    for _ in range(4):
        ops = tuple(rng.choice(NB201_OPS) for _ in range(6))
        c = count_complexity(build_model(nb201(ops), num_classes=10, in_chans=3), input_size=32, in_chans=3)
        assert counts(ops) == (c["macs"], c["params"])


def test_cells_with_dead_edges_count_only_their_live_edges():
    """An edge whose result never reaches the cell's output is left out of the traced count; the shortcut agrees."""
    counts = cell_counts()
    rng = random.Random(2)
    cells = [("conv3x3", "conv3x3", "conv3x3", "none", "none", "none"),  # output cut off: no cell MACs at all
             ("conv3x3", "none", "conv1x1", "none", "none", "conv3x3"),  # chain 0→1→2→3: all live
             ("conv3x3", "conv3x3", "none", "skip", "none", "none")]  # only 3←0 is live
    cells += [tuple(rng.choice(["none", "none", "conv3x3", "conv1x1"]) for _ in range(6)) for _ in range(3)]
    for ops in cells:
        c = count_complexity(build_model(nb201(ops), num_classes=10, in_chans=3), input_size=32, in_chans=3)
        assert counts(ops) == (c["macs"], c["params"]), ops


def _grid_hv(points, ref):
    """Hypervolume by the union of boxes on the grid of the points' own coordinates."""
    accs = sorted({0.0, *(a for a, _ in points)})
    macs = sorted({ref, *(m for _, m in points)})
    area = 0.0
    for (a0, a1), (m0, m1) in itertools.product(zip(accs, accs[1:]), zip(macs, macs[1:])):
        if any(a >= a1 and m <= m0 for a, m in points):
            area += (a1 - a0) * (m1 - m0)
    return area


def test_hypervolume_matches_a_grid_union():
    rng = random.Random(1)
    for _ in range(5):
        pts = [(rng.random(), rng.uniform(0, 10)) for _ in range(12)]
        assert hypervolume(pts, ref_macs=10.0) == pytest.approx(_grid_hv(pts, 10.0))
    assert hypervolume([(0.5, 4.0), (0.4, 5.0)], ref_macs=10.0) == pytest.approx(0.5 * 6)


@needs_table
@pytest.mark.parametrize("sampler", ["random", "nsga2"])  # nsga2: its sampler must survive Ray Tune's pickling
def test_bench_space_json_through_the_real_pipeline(tmp_path, cifar_dir, sampler):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "search.cli", "bench-space", "nb201", "--sampler", sampler,
                           "--trials", "6", "--seeds", "2", "--data-dir", str(cifar_dir), "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert set(res) == {"best_acc", "hv_fraction", "overhead_s_per_trial"}
    assert list(res["best_acc"]) == ["6"] and list(res["overhead_s_per_trial"]) == ["6"]
    top = max(e.baseline_accuracy for e in load_nb201_table().values()) / 100
    assert 0.1 <= res["best_acc"]["6"]["mean"] <= top
    assert 0 < res["hv_fraction"]["6"]["mean"] <= 1 and res["overhead_s_per_trial"]["6"]["mean"] > 0
