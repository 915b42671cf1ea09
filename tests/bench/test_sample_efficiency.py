"""bench/sample_efficiency.py: the cached table covers exactly the quickstart space as the spec hashes it today,
and the sampler comparison runs on it (few seeds, small budgets)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from search import SAMPLERS, SearchSpace, load_config

from ._load import load_bench

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def se():
    mod = load_bench("sample_efficiency")
    return mod


def test_table_holds_every_architecture_of_the_quickstart_space(se):
    doc = json.loads(se.TABLE.read_text())
    space = SearchSpace(load_config(ROOT / "configs" / "quickstart.yaml").space, input_size=doc["input_size"])
    archs = se.enumerate_space(space)
    assert len(archs) == len({a.arch_id for _, a in archs}) == space.size() == 96
    rows = {r["arch_id"]: r for r in doc["rows"]}
    assert set(rows) == {a.arch_id for _, a in archs}, "stale table: rebuild with --build-table"
    for params, arch in archs:  # the stored choices sample the same architecture
        assert rows[arch.arch_id]["choice"] == params
        assert 0.0 < rows[arch.arch_id]["val_acc"] <= 1.0 and rows[arch.arch_id]["macs"] > 0


def test_bench_runs_and_hypervolumes_are_fractions(se):
    res = se.bench(se.TABLE, objectives=["val_acc", "macs"], budgets=[4, 8], seeds=2, random_max=16)
    assert list(res["hv"]) == se.sampler_order() and sorted(res["hv"]) == SAMPLERS.names()
    for sampler in SAMPLERS.names():
        for n in (4, 8):
            assert len(res["hv"][sampler][n]) == 2
            assert all(0.0 < v <= 1.0 + 1e-9 for v in res["hv"][sampler][n])
            assert all(1 <= u <= n for u in res["unique"][sampler][n])
    assert all(a <= b for a, b in zip(res["hv"]["random"][4], res["hv"]["random"][8]))  # one run, prefixes
    assert all(m is None or 1 <= m <= 16 for m in res["match"].values())
    assert "random search needs" in se.format_report(**res)
    # normalised into [0, 1]; the whole table's hypervolume is that of its Pareto front alone
    doc = json.loads(se.TABLE.read_text())
    norm = se.normaliser(doc["rows"], ["val_acc", "macs"])
    pts = [norm([r["val_acc"], r["macs"]]) for r in doc["rows"]]
    assert min(min(p) for p in pts) == 0.0 and max(max(p) for p in pts) == 1.0
    front = [p for p in pts if not any(q[0] <= p[0] and q[1] <= p[1] and q != p for q in pts)]
    assert 0 < len(front) < len(pts)
    assert se.hypervolume(pts) == pytest.approx(se.hypervolume(front))
    assert se.hypervolume(pts) > 0
