"""bench/compress_families.py end to end on digits for two families: both reach the MACs target (fvcore, recounted
here from the exported YAML is covered by tests/train/test_compress_graph.py), the table has one row each."""
from __future__ import annotations

import json

import pytest

from ._load import load_bench


def test_bench_prunes_each_family_to_the_target(tmp_path, capsys):
    bench = load_bench("compress_families")
    out = tmp_path / "rows.json"
    assert bench.main(["--data", "digits", "--families", "ghost,resnext", "--epochs", "1", "--finetune-epochs", "1",
                       "--steps", "1", "--interval", "2", "--batch-size", "64", "--threads", "1",
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["family"], r["method"]) for r in rows] == [("ghost", "taylor"), ("resnext", "taylor")]
    for r in rows:
        assert "error" not in r, r
        assert 0.5 <= r["kept_macs"] <= 0.61 and r["surgery_max_abs_diff"] < 1e-3
        assert r["groups_pruned"] >= 1 and 0.0 <= r["finetuned_acc"] <= 1.0
    text = capsys.readouterr().out
    assert "compression per block family on digits" in text and text.count("\nresnext     taylor") == 1
    with pytest.raises(SystemExit):
        bench.main(["--families", "nope"])
    with pytest.raises(SystemExit):
        bench.main(["--methods", "magic"])
