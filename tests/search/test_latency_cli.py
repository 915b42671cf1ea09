"""`nas latency-table` end to end on a tiny space: build (through the real command), validate, cover every
sampled architecture; config checks of latency.mode/table; predicted latency as a cheap hard constraint."""
from __future__ import annotations

import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from evaluators.latency_table import FORMAT, LatencyPredictor, LatencyTable
from search.cli import main
from search.config import ConfigError, parse_config
from search.latency_space import Problem, build_space_table, sample_archs
from search.space_def import SearchSpace

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "name": "tiny",
    "data": {"name": "digits"},
    "space": {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0], "depth": [1, 2],
              "per_stage": ["depth", "width_mult"], "order": ["pre", "post"]},
    "objectives": ["val_acc", "latency_ms"],
    "latency": {"warmup": 1, "repeats": 3},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("lt")
    cfg = tmp / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "latency": {**TINY["latency"], "lock_dir": str(tmp)}}))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "latency-table", "--space", str(cfg), "--out",
                           str(tmp / "table.yaml"), "--warmup", "1", "--repeats", "3", "--calibrate", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return cfg, tmp / "table.yaml", proc.stdout


def test_build_writes_a_calibrated_table_covering_the_space(built):
    cfg_path, table_path, stdout = built
    assert re.search(r"measured \d+ distinct units", stdout) and "calibrated on 3 architectures" in stdout
    data = yaml.safe_load(table_path.read_text())
    assert data["format"] == FORMAT and (data["device"], data["batch"], data["in_chans"], data["num_classes"]) == \
        ("cpu", 1, 1, 10)
    assert data["meta"]["calibration"]["archs"] == 3 and data["meta"]["cores"] >= 1
    table = LatencyTable.load(table_path)
    cfg = parse_config(TINY)
    archs = sample_archs(SearchSpace(cfg.space, input_size=16), 30, seed=7)
    predictor = LatencyPredictor(table, measure_missing=False)  # a missing key would raise KeyError
    assert len(archs) >= 20 and all(predictor.predict(a) > 0 for a in archs)
    assert all(e["ms"] > 0 for e in table.entries.values())


def test_validate_prints_share_and_rank_correlation(built, capsys):
    cfg_path, table_path, _ = built
    assert main(["latency-table", "--validate", "--table", str(table_path), "--space", str(cfg_path), "--n", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"^[0-9a-f]{12}\s", line)]
    assert len(rows) == 4
    m = re.search(r"within ±10%: (\d+)/4 .*Spearman ρ = (-?[\d.]+|nan)", out)
    assert m and 0 <= int(m.group(1)) <= 4


def test_validate_needs_a_table(built, capsys):
    assert main(["latency-table", "--validate", "--space", str(built[0])]) == 2
    assert "--table: required with --validate" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--calibrate", "--warmup", "--threads"])
def test_negative_counts_stop_before_anything_is_measured(built, capsys, option):
    with pytest.raises(SystemExit) as exc:
        main(["latency-table", "--space", str(built[0]), "--out", "unused.yaml", option, "-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert option in err and "must be an integer >= 0, got '-1'" in err


def test_enumeration_couples_shared_width_multipliers():
    shared = parse_config({**TINY, "space": {**TINY["space"], "per_stage": ["depth"]}})
    per_stage = parse_config(TINY)
    tables = []
    for cfg in (shared, per_stage):
        space = SearchSpace(cfg.space, input_size=16)
        table = build_space_table(space, Problem(1, 10, 16), device="cpu", batch=1, threads=1, warmup=0, repeats=1,
                                  out=lambda s: None)
        predictor = LatencyPredictor(table, measure_missing=False)
        assert all(predictor.predict(a) > 0 for a in sample_archs(space, 20, seed=3))
        tables.append(table)
    # shared: stage 2 reads the width of the same multiplier only (no 8>16 next to 16>16 ... pairs)
    assert set(tables[0].entries) < set(tables[1].entries)
    assert any("block=basic c=4>16" in k for k in tables[1].entries)
    assert not any("block=basic c=4>16" in k for k in tables[0].entries)


def test_config_checks_for_predict_mode(built):
    _, table_path, _ = built
    with pytest.raises(ConfigError, match="latency.table: required with latency.mode: predict"):
        parse_config({"latency": {"mode": "predict"}})
    with pytest.raises(ConfigError, match="latency.table: only read with latency.mode: predict"):
        parse_config({"latency": {"table": str(table_path)}})
    with pytest.raises(ConfigError, match="constraints.max_latency_ms: hard constraints need a cheap evaluator"):
        parse_config({"constraints": {"max_latency_ms": 1.0}})
    with pytest.raises(ConfigError, match=r"latency.batch_sizes: is \[8\] but the table .* \[1\]"):
        parse_config({"latency": {"mode": "predict", "table": str(table_path), "batch_sizes": [8]}})
    with pytest.raises(ConfigError, match="latency.table: not a latency table"):
        parse_config({"latency": {"mode": "predict", "table": str(ROOT / "configs" / "quickstart.yaml")}})
    cfg = parse_config({"latency": {"mode": "predict", "table": str(table_path)}})
    assert Path(cfg.latency.table).is_absolute()


def test_predicted_latency_is_a_hard_constraint_before_training(built):
    from search.evaluation import ArchEvaluation, ConstraintViolation

    _, table_path, _ = built
    base = {**TINY, "latency": {"mode": "predict", "table": str(table_path), "isolate": False}}
    evaluate = ArchEvaluation(parse_config({**base, "constraints": {"max_latency_ms": 1e-6}}))
    assert evaluate.evaluators["latency"].cheap
    arch = sample_archs(SearchSpace(parse_config(TINY).space, input_size=16), 1, seed=0)[0]
    start = time.perf_counter()
    with pytest.raises(ConstraintViolation, match=r"constraints.max_latency_ms: [\d.e-]+ > 1e-06"):
        pickle.loads(pickle.dumps(evaluate))(arch)  # as Ray ships it: the copy builds its evaluators, table read
    assert time.perf_counter() - start < 5  # rejected from the table alone, no training
    expected = LatencyPredictor(LatencyTable.load(table_path), measure_missing=False).predict(arch)
    assert evaluate.evaluators["latency"].evaluate(arch)["latency_ms"] == pytest.approx(expected)
    rgb = LatencyTable.load(table_path)
    rgb.in_chans = 3
    rgb_path = rgb.save(table_path.parent / "rgb.yaml")
    with pytest.raises(ConfigError, match="built for 3-channel images and 10 classes, but the data set has 1"):
        ArchEvaluation(parse_config({**base, "latency": {**base["latency"], "table": str(rgb_path)}}))
