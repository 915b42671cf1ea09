"""bench/lrpet_paths.py end to end on digits with a small network: three rows, both low-rank paths near the MACs
target, and the printed gap recomputed from the rows."""
from __future__ import annotations

import json

import pytest

from ._load import load_bench


def test_bench_compares_both_paths_at_equal_macs(tmp_path, capsys):
    from space import Arch, Stage, Stem

    bench = load_bench("lrpet_paths")
    arch = Arch(stem=Stem(width=16), stages=(Stage("basic", 1, 16, 1), Stage("basic", 1, 32, 2)), input_size=8)
    (tmp_path / "a.yaml").write_text(arch.to_yaml())
    out = tmp_path / "rows.json"
    assert bench.main(["--data", "digits", "--arch", str(tmp_path / "a.yaml"), "--epochs", "2",
                       "--finetune-epochs", "1", "--batch-size", "64", "--lr", "0.05", "--threads", "1",
                       "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    text = capsys.readouterr().out
    assert [r["path"].split(" (")[0] for r in rows] == ["dense", "from trained", "from scratch"]
    for r in rows[1:]:
        assert 0.45 <= r["macs"] / rows[0]["macs"] <= 0.6
        assert 0.0 <= r["test_acc"] <= 1.0
    assert f"{rows[2]['test_acc'] - rows[1]['test_acc']:+.4f} test accuracy" in text
    with pytest.raises(SystemExit):
        bench.main(["--epochs", "2", "--finetune-epochs", "2"])
