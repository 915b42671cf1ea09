"""bench/ort_latency.py end to end on 2 architectures: rows interleaved in alternating order, the summary's ratio
and Spearman ρ recomputed from the rows, and the two runtimes within a loose factor of each other."""
from __future__ import annotations

import json
import statistics

import pytest

from ._load import load_bench


def test_bench_runs_on_two_architectures(tmp_path, capsys):
    bench = load_bench("ort_latency")
    out = tmp_path / "ort.json"
    assert bench.main(["--n", "2", "--rounds", "2", "--warmup", "1", "--repeats", "3", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows, summary = result["rows"], result["summary"]
    assert [r["arch_id"] for r in rows] == [a.arch_id for a in bench.sample_full_space(2, seed=0)]  # seeded
    assert [r["first"] for r in rows] == ["torch", "ort"]
    for r in rows:
        assert r["arch_id"] in text and r["ratio"] == pytest.approx(r["torch_ms"] / r["ort_ms"])
        assert 0.1 < r["ratio"] < 10  # the same network on two runtimes: the same order of magnitude
    assert summary["median_ratio"] == pytest.approx(statistics.median(r["ratio"] for r in rows))
    same_order = (rows[0]["torch_ms"] < rows[1]["torch_ms"]) == (rows[0]["ort_ms"] < rows[1]["ort_ms"])
    assert summary["spearman"] == pytest.approx(1.0 if same_order else -1.0)
    assert f"median torch/ORT ratio {summary['median_ratio']:.2f}" in text
