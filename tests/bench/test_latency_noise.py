"""bench/latency_noise.py --quick end to end: three protocols side by side (the CVs recomputed from the rows,
the interleaved number = ratio × the reference calibrated once) and the table validation with its noise floor."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ._load import load_bench


def test_bench_quick(tmp_path, capsys):
    bench = load_bench("latency_noise")
    out = tmp_path / "noise.json"
    assert bench.main(["--quick", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows, summary = result["repeatability"]["rows"], result["repeatability"]["summary"]
    assert len(rows) == 3 and len({r["reference_ms"] for r in rows}) == 1  # one calibration for all repeats
    for key in ("old_ms", "plain_ms", "interleaved_ms"):
        values = np.array([r[key] for r in rows])
        assert summary[key]["cv_pct"] == pytest.approx(100 * values.std() / values.mean())
        assert summary[key]["max_over_min"] == pytest.approx(values.max() / values.min())
    for r in rows:
        assert r["interleaved_ms"] == pytest.approx(r["ratio"] * r["reference_ms"])
        assert 0.5 < r["ratio"] < 2  # wrn-16-1 against its own architecture
    assert set(result["validation"]) == {"plain", "interleaved"}
    for v in result["validation"].values():
        assert v["n"] == 3 and v["truth_repeats"] == 3 and 0 <= v["within_10pct"] <= 1
        assert v["noise_cv_median_pct"] >= 0 and v["units"] > 0
    assert "predictor validation side by side" in text
    assert "CV over repeats (max/min): old" in text and "noise floor: ground truth = median of 3" in text


def test_search_drift_probes_during_a_real_search(tmp_path):
    """Two `nas latency` probes 20 s apart while a real quickstart search trains: both scaled by one stored
    reference, the drift recomputed from the probes."""
    from pathlib import Path

    bench = load_bench("latency_noise")
    config = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    lines: list[str] = []
    res = bench.search_drift(0.6, arch="wrn-16-2", config=config, probes=2, first_s=15.0, out=lines.append)
    rows = res["rows"]
    assert len(rows) == 2 and rows[0]["reference_ms"] == rows[1]["reference_ms"]
    assert res["drift_pct"] == pytest.approx(100 * (rows[1]["latency_ms"] / rows[0]["latency_ms"] - 1))
    assert all(1.0 < r["ratio"] < 6.0 for r in rows)  # wrn-16-2 against the reference wrn-16-1
    assert any(line.startswith("start-vs-end drift") for line in lines)
