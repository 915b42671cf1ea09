"""bench/curve_table.py: the committed learning-curve table is whole and matches today's space; a build records the
curve the proxy trainer reports and resumes without retraining."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from evaluators.accuracy import AccuracyEvaluator
from search import SearchSpace

from ._load import load_bench

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ct():
    return load_bench("curve_table")


def test_committed_table_loads_with_whole_curves(ct):
    doc = json.loads(ct.TABLE.read_text())
    rows, max_t = doc["rows"], doc["max_t"]
    assert len(rows) >= 48 and len({r["arch_id"] for r in rows}) == len(rows)
    assert doc["config"]["proxy"]["epochs"] == max_t and doc["threads"] == 1 and "curve_table.py" in doc["about"]
    space = SearchSpace(ct.table_config(ROOT / "configs" / "quickstart.yaml", epochs=max_t).space,
                        input_size=doc["input_size"])
    assert space.size() == doc["space_size"]
    for r in rows:
        assert len(r["val_acc"]) == max_t and all(0.0 <= a <= 1.0 for a in r["val_acc"])
        assert r["macs"] > 0 and r["params"] > 0 and r["seconds"] > 0
        assert space.sample(optuna.trial.FixedTrial(r["choice"])).arch_id == r["arch_id"]  # today's spec hashes it so


def test_build_records_the_reported_curve_and_resumes(ct, tmp_path, capsys):
    out = tmp_path / "curves.json"
    argv = ["--epochs", "2", "--order-seed", "3", "--out", str(out)]
    assert ct.main([*argv, "--archs", "1"]) == 0
    first = json.loads(out.read_text())["rows"]
    assert len(first) == 1 and first[0]["seconds"] > 0

    cfg = ct.table_config(ROOT / "configs" / "quickstart.yaml", epochs=2)
    _, archs = ct.ordered_archs(cfg, order_seed=3)
    params, arch = archs[0]
    assert first[0]["arch_id"] == arch.arch_id and first[0]["choice"] == params
    from search.evaluation import load_data
    seen = []
    AccuracyEvaluator(data=load_data(cfg), epochs=2, batch_size=cfg.proxy.batch_size, lr=cfg.proxy.lr,
                      val_fraction=cfg.data.val_fraction, seed=cfg.search.seed, threads=1).evaluate(
        arch, report=lambda m: seen.append(m["val_acc"]))
    assert first[0]["val_acc"] == seen  # the trainer alone, called directly, reports the same curve

    capsys.readouterr()
    assert ct.main([*argv, "--archs", "2"]) == 0
    assert "1 rows in curves.json; 1 to train" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == first[0] and rows[1]["arch_id"] == archs[1][1].arch_id
    with pytest.raises(SystemExit, match="max_t: .* was built with 2, this run asks 3"):
        ct.main(["--epochs", "3", "--order-seed", "3", "--out", str(out)])
