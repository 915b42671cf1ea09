"""bench/rank_fidelity.py: the proxy and long curves are what an evaluator built by hand from the config's fields
trains; τ and ρ match hand-counted pairs and ranks; a rerun trains only what is missing and refuses other settings."""
from __future__ import annotations

import json

import pytest

from ._load import ROOT, load_bench

QUICKSTART = ROOT / "configs" / "quickstart.yaml"


def test_fidelity_matches_hand_counted_pairs():
    bench = load_bench("rank_fidelity")
    long_acc = [0.50, 0.60, 0.70, 0.80, 0.90]
    final = [0.30, 0.20, 0.40, 0.50, 0.45]
    rows = [{"proxy_curve": [0.1 * k, f], "long_curve": [0.0, t], **{p: None for p in bench.PROXIES},
             "synflow": float(k), "macs": -float(k), "params": 1.0 + k}
            for k, (f, t) in enumerate(zip(final, long_acc))]
    rows[4]["snip"] = 1.0  # snip defined on too few rows: NaN, n = 1
    rows.append({"proxy_curve": None, "long_curve": None, "synflow": 9.0})  # diverged: left out everywhere
    res = bench.fidelity(rows)
    # final vs long: pairs (i<j) discordant are (0,1) and (3,4): C = 8, D = 2 → τ = 6/10; ranks of final
    # (2, 1, 3, 5, 4) vs (1..5): Σd² = 1+1+0+1+1 = 4 → ρ = 1 − 6·4/(5·24) = 0.8
    assert res["final"]["kendall"] == pytest.approx(0.6) and res["final"]["spearman"] == pytest.approx(0.8)
    assert res["final"]["n"] == 5
    assert res["epoch1"]["kendall"] == pytest.approx(1.0)  # 0, 0.1, … rises with the long accuracy
    assert res["synflow"]["kendall"] == pytest.approx(1.0) and res["macs"]["kendall"] == pytest.approx(-1.0)
    assert res["snip"]["n"] == 1 and res["snip"]["kendall"] != res["snip"]["kendall"]  # NaN
    # every resample of a perfectly (anti-)concordant signal is too: the interval is one point
    assert res["epoch1"]["kendall_90"] == pytest.approx([1.0, 1.0])
    assert res["macs"]["kendall_90"] == pytest.approx([-1.0, -1.0])
    lo, hi = res["final"]["kendall_90"]
    assert -1.0 <= lo < 0.6 < hi <= 1.0 and bench.fidelity(rows)["final"]["kendall_90"] == [lo, hi]  # seeded


def test_curves_are_the_configs_training_and_rerun_resumes(tmp_path, capsys):
    bench = load_bench("rank_fidelity")
    out = tmp_path / "rf.json"
    assert bench.main(["--config", str(QUICKSTART), "--archs", "3", "--long-factor", "2", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["proxy_epochs"] == 6 and doc["long_epochs"] == 12 and len(doc["rows"]) == 3
    printed = capsys.readouterr().out
    assert "3 architecture(s) with a long training (12 epochs)" in printed and "\nfinal " in printed

    from evaluators.accuracy import AccuracyEvaluator
    from space import Arch
    from train.data import load_dataset

    # quickstart.yaml's proxy recipe written out by hand: digits, batch 32, lr 0.1, 20% validation, seed 0
    data = load_dataset("digits")
    row = doc["rows"][1]
    arch = Arch.from_yaml(row["arch_yaml"])
    seen: list[float] = []
    short = AccuracyEvaluator(data=data, epochs=6, batch_size=32, lr=0.1, val_fraction=0.2, seed=0, threads=1)
    assert short.evaluate(arch, report=lambda m: seen.append(m["val_acc"]))["val_acc"] == row["proxy_curve"][-1]
    assert seen == row["proxy_curve"]
    long = AccuracyEvaluator(data=data, epochs=12, batch_size=32, lr=0.1, val_fraction=0.2, seed=0, threads=1)
    assert long.evaluate(arch)["val_acc"] == row["long_curve"][-1] and len(row["long_curve"]) == 12
    assert row["macs"] > 0 and row["synflow"] is not None and row["grad_norm"] > 0

    first = [r["arch_id"] for r in doc["rows"]]
    assert bench.main(["--config", str(QUICKSTART), "--archs", "4", "--long-factor", "2", "--out", str(out)]) == 0
    assert "3 row(s) in rf.json; 1 to train" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["arch_id"] for r in rows[:3]] == first and len(rows) == 4
    assert rows[3]["arch_id"] == bench.sample_archs(bench.bench_config(QUICKSTART), 4, seed=0)[3].arch_id

    with pytest.raises(SystemExit, match="long_factor: built with 2, this run asks 3"):
        bench.main(["--config", str(QUICKSTART), "--archs", "4", "--long-factor", "3", "--out", str(out)])
    # a setting that changes the sample names the one field; one that does not (n_trials) is no obstacle
    other = tmp_path / "other.yaml"
    other.write_text(QUICKSTART.read_text().replace("width_mult: [0.25, 0.5, 1.0]", "width_mult: [0.5, 1.0]")
                     .replace("n_trials: 16", "n_trials: 99"))
    with pytest.raises(SystemExit, match=r"^rf.json: space.width_mult: built with \[0.25, 0.5, 1.0\], this run "
                                         r"asks \[0.5, 1.0\] \(use another"):
        bench.main(["--config", str(other), "--archs", "4", "--long-factor", "2", "--out", str(out)])
    more = tmp_path / "more.yaml"
    more.write_text(QUICKSTART.read_text().replace("n_trials: 16", "n_trials: 99"))
    assert bench.main(["--config", str(more), "--archs", "4", "--long-factor", "2", "--out", str(out)]) == 0
    capsys.readouterr()

    # another proxy budget (its own cosine over 2 epochs) is added to every row, nothing else is retrained
    before = json.loads(out.read_text())["rows"]
    assert bench.main(["--config", str(QUICKSTART), "--archs", "4", "--long-factor", "2", "--proxy-epochs", "2",
                       "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 row(s) in rf.json; 0 to train" in printed and "4 training(s) at other proxy budgets (2 epochs)" in printed
    assert "\nfinal@2 " in printed
    after = json.loads(out.read_text())["rows"]
    for old, new in zip(before, after):
        assert {k: v for k, v in new.items() if k != "budgets"} == old and len(new["budgets"]["2"]["curve"]) == 2
    two = AccuracyEvaluator(data=data, epochs=2, batch_size=32, lr=0.1, val_fraction=0.2, seed=0, threads=1)
    assert two.evaluate(arch)["val_acc"] == after[1]["budgets"]["2"]["curve"][-1]
    res = bench.fidelity(after)
    assert res["final@2"]["n"] == 4
    assert bench.main(["--config", str(QUICKSTART), "--archs", "4", "--long-factor", "2", "--proxy-epochs", "2",
                       "--out", str(out)]) == 0
    assert "other proxy budgets" not in capsys.readouterr().out  # already there: nothing to train


def test_long_epoch_fidelity_matches_hand_counted_pairs():
    bench = load_bench("rank_fidelity")
    # four long curves of 3 epochs; their ends rank a < b < c < d
    curves = {"a": [0.1, 0.4, 0.50], "b": [0.3, 0.2, 0.60], "c": [0.2, 0.5, 0.70], "d": [0.4, 0.3, 0.80]}
    rows = [{"long_curve": c} for c in curves.values()] + [{"long_curve": None}, {"long_curve": [0.9]}]
    res = bench.long_epoch_fidelity(rows, [1, 2, 3])
    # epoch 1 ranks a < c < b < d: one discordant pair (b, c) of 6 → τ = (5 − 1)/6; Σd² = 2 → ρ = 1 − 12/60
    assert res[1]["kendall"] == pytest.approx(4 / 6) and res[1]["spearman"] == pytest.approx(0.8)
    # epoch 2 ranks b < d < a < c: discordant (a,b) (a,d) (c,d) → τ = 0; the incomplete curve [0.9] is left out
    assert res[2]["kendall"] == pytest.approx(0.0) and res[2]["n"] == 4
    assert res[3]["kendall"] == pytest.approx(1.0) and res[1]["n"] == res[3]["n"] == 4


def test_a_longer_proxys_own_epochs_match_hand_counted_pairs():
    """``budget=K``: the K-epoch proxy's own epoch k (a rung) against the long end; rows without that budget, or
    with an incomplete curve of it, are left out."""
    bench = load_bench("rank_fidelity")
    ends = {"a": 0.50, "b": 0.60, "c": 0.70, "d": 0.80}  # the long ends rank a < b < c < d
    proxy = {"a": [0.3, 0.1, 0.2], "b": [0.1, 0.2, 0.3], "c": [0.2, 0.3, 0.4], "d": [0.4, 0.4, 0.5]}
    rows = [{"long_curve": [0.0, ends[n]], "budgets": {"3": {"curve": proxy[n]}}} for n in ends]
    rows += [{"long_curve": [0.0, 0.9]}, {"long_curve": [0.0, 0.95], "budgets": {"3": {"curve": [0.5]}}}]
    res = bench.long_epoch_fidelity(rows, [1, 2], budget=3)
    # epoch 1 ranks b < c < a < d: discordant (a,b) (a,c) → τ = (4 − 2)/6; Σd² = 4+1+1 = 6 → ρ = 1 − 36/60
    assert res[1]["kendall"] == pytest.approx(2 / 6) and res[1]["spearman"] == pytest.approx(0.4)
    assert res[2]["kendall"] == pytest.approx(1.0) and res[2]["n"] == res[1]["n"] == 4  # epoch 2: a < b < c < d
