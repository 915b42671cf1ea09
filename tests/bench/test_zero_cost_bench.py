"""bench/zero_cost.py: rank correlations against hand-computed values; the NAS-Bench-201 run in two processes keeps
the seeded cells in order with the table's accuracy and the same scores as one proxy call each; the own-space run
reuses its table of trained architectures instead of training them again."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ._load import ROOT, load_bench


def test_correlations_match_hand_computed_ranks():
    bench = load_bench("zero_cost")
    rows = []
    for k, (acc, s) in enumerate([(0.1, 1.0), (0.2, 3.0), (0.3, 2.0), (0.4, 4.0)]):
        rows.append({p: s for p in bench.PROXIES} | {"macs": -s, "params": float(k), "acc": acc})
    rows[0]["naswot"] = None  # undefined for that network: left out of its own row only
    corr = bench.correlations(rows)
    # d = (0, 1, 1, 0): ρ = 1 − 6·2 / (4·15) = 0.8; τ = (5 concordant − 1 discordant) / 6
    assert corr["snip"]["spearman"] == pytest.approx(0.8) and corr["snip"]["kendall"] == pytest.approx(4 / 6)
    assert corr["macs"]["spearman"] == pytest.approx(-0.8) and corr["params"]["spearman"] == pytest.approx(1.0)
    assert corr["naswot"]["n"] == 3 and corr["naswot"]["spearman"] == pytest.approx(0.5)  # d = (1, 1, 0) of 3
    assert corr["vote"]["spearman"] == pytest.approx(0.8) and corr["vote"]["n"] == 4


def test_nb201_run_in_two_processes(tmp_path, cifar_dir):
    out = tmp_path / "zc.json"
    env = {**os.environ, "NAS_DATA_DIR": str(cifar_dir)}
    proc = subprocess.run([sys.executable, "bench/zero_cost.py", "--space", "nb201", "--n", "3", "--jobs", "2",
                           "--batch-size", "16", "--json", str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nb201: 3 random cells (seed 0), batch 16" in proc.stdout and "\nsynflow " in proc.stdout
    import random

    from evaluators.nb201_table import load_nb201_table
    from evaluators.zero_cost import score
    from evaluators.zero_cost_metrics import training_batch
    from space import build_model, nb201
    from train.data import load_dataset

    table = load_nb201_table()
    rows = json.loads(out.read_text())["rows"]
    cells = random.Random(0).sample(sorted(table), 3)
    assert [tuple(r["ops"]) for r in rows] == cells
    assert [r["acc"] for r in rows] == [table[c].baseline_accuracy / 100 for c in cells]
    batch = training_batch(load_dataset("cifar10", data_dir=str(cifar_dir)), batch_size=16, val_fraction=0.2, seed=0)
    torch.manual_seed(0)
    model = build_model(nb201(cells[-1]), num_classes=10, in_chans=3)
    assert rows[-1]["snip"] == pytest.approx(score("snip", model, batch), rel=1e-6)
    assert rows[-1]["naswot"] == pytest.approx(score("naswot", model, batch), rel=1e-6)


def test_own_space_reads_its_table_instead_of_training(tmp_path, cifar_dir, capsys):
    bench = load_bench("zero_cost")
    archs = bench.sample_full_space(4, seed=5)
    assert len(set(archs)) == 4
    table = tmp_path / "t.json"
    rows = [{"arch_yaml": a, **{p: float(k) for p in bench.PROXIES}, "macs": 1.0 * k, "params": 2.0 * k,
             "val_acc": 0.1 + 0.1 * k, "seconds": 0.0} for k, a in enumerate(archs)]
    rows[3]["val_acc"] = None  # a run that diverged: left out
    table.write_text(json.dumps({"rows": rows[:2]}))
    (tmp_path / "t.partial.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[2:]))
    assert bench.main(["--space", "full", "--n", "4", "--seed", "5", "--table", str(table),
                       "--data-dir", str(cifar_dir)]) == 0
    text = capsys.readouterr().out
    assert "\ntraining" not in "\n" + text and "1 architecture(s) diverged" in text
    assert "params         1.000" in text  # 3 rows, params rising with val_acc
    assert not (tmp_path / "t.partial.jsonl").exists() and len(json.loads(table.read_text())["rows"]) == 4


def test_own_space_no_train_reports_on_the_table_alone(tmp_path, capsys):
    bench = load_bench("zero_cost")
    archs = bench.sample_full_space(5, seed=2)
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"rows": [{"arch_yaml": a, **{p: float(k) for p in bench.PROXIES}, "macs": 1.0 * k,
                                           "params": 1.0 * k, "val_acc": 0.1 * k, "seconds": 0.0}
                                          for k, a in enumerate(archs[:3])]}))
    assert bench.main(["--space", "full", "--n", "5", "--seed", "2", "--table", str(table), "--no-train"]) == 0
    text = capsys.readouterr().out
    assert "2 of the 5 architecture(s) not in" in text and "full_space: 3 random architectures" in text
    assert "\ntraining" not in "\n" + text and len(json.loads(table.read_text())["rows"]) == 3
