"""bench/nb201_peers.py: one tiny run (2 seeds × 12 trials, TPE through the real pipeline, Syne Tune's random search
and REA) prints one table of the expected shape, and its numbers agree with the stored trials, the table looked up
independently and Optuna's own hypervolume."""
from __future__ import annotations

import importlib.util
import re
import sys

import numpy as np
import optuna
import pytest
from optuna._hypervolume import compute_hypervolume

from evaluators.nb201_table import MISSING, PACKAGE, load_nb201_table
from search.bench_space import cell_counts, true_front_hv

from ._load import load_bench

needs_table = pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None, reason=MISSING)
SEEDS, TRIALS = 2, 12


@pytest.fixture(scope="module")
def peers():
    return load_bench("nb201_peers")


def stored_trials(results, name: str) -> list[optuna.trial.FrozenTrial]:
    """The COMPLETE trials of one run folder's study, in trial order."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{results / name / 'study.db'}")
    return sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)),
                  key=lambda t: t.number)


def cell_ops(trial: optuna.trial.FrozenTrial) -> tuple[str, ...]:
    edges = sorted((int(re.search(r"ops\[(\d)\]", k).group(1)), v) for k, v in trial.params.items() if "ops[" in k)
    assert [i for i, _ in edges] == list(range(6)), trial.params
    return tuple(v for _, v in edges)


@needs_table
def test_tiny_run_prints_one_table_that_matches_the_stored_trials(peers, tmp_path, cifar_dir):
    pytest.importorskip("syne_tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    res = peers.run(samplers=["tpe"], peers=True, seeds=SEEDS, trials=TRIALS, data_dir=str(cifar_dir),
                    results=tmp_path, out=lambda s: None)
    summary = peers.summarise(res)
    text = peers.format_table(summary)
    lines = text.splitlines()
    assert lines[1].split() == ["method", f"acc@{TRIALS}", f"hv@{TRIALS}"]
    assert [ln[:16].strip() for ln in lines[2:5]] == ["ours tpe", "syne-tune random", "syne-tune rea"]
    assert lines[5].startswith("syne-tune random at 2x the trials: ") and len(lines) == 6
    for line in lines[2:5]:
        assert len(re.findall(r"\d\.\d{4}±\d\.\d{4}", line)) == 2, line

    table, counts = load_nb201_table(), cell_counts()
    optimum = max(e.baseline_accuracy for e in table.values()) / 100
    assert summary["optimum"] == pytest.approx(optimum) and "table optimum 0.9407" in lines[0]
    hv_true, ref = true_front_hv()
    for seed in range(SEEDS):
        so = stored_trials(tmp_path, f"bench-tpe-s{seed}-val_acc")[:TRIALS]
        assert len(so) == TRIALS
        accs = [table[cell_ops(t)].baseline_accuracy / 100 for t in so]
        assert [t.values[0] for t in so] == pytest.approx(accs)  # the pipeline looked the same cells up
        assert res["rows"]["ours tpe"]["best"][TRIALS][seed] == pytest.approx(max(accs))
        assert max(accs) <= optimum
        mo = stored_trials(tmp_path, f"bench-tpe-s{seed}-val_acc-macs")[:TRIALS]
        for t in mo:
            assert t.values[1] == counts(cell_ops(t))[0]
        loss = np.array([[-t.values[0], t.values[1]] for t in mo])
        hv = compute_hypervolume(loss, np.array([0.0, ref]))
        assert res["rows"]["ours tpe"]["hv"][TRIALS][seed] == pytest.approx(hv / hv_true)
    for name in ("random", "rea"):
        curves = res["rows"][f"syne-tune {name}"]
        assert all(0.0 < v <= optimum for v in curves["best"][TRIALS])
        assert all(0.0 < v <= 1.0 for v in curves["hv"][TRIALS])
    rnd = res["rows"]["syne-tune random"]
    assert all(a <= b for a, b in zip(rnd["best"][TRIALS], rnd["best"][2 * TRIALS]))  # one run, prefixes
    # Syne Tune's REA (population 100) samples at random until its population is full: with NumPy seeded alike
    # its first trials are random search's
    assert res["rows"]["syne-tune rea"]["best"][TRIALS] == rnd["best"][TRIALS]


def test_missing_syne_tune_is_one_line_and_exit_2(peers, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "syne_tune", None)  # import syne_tune raises ImportError
    assert peers.main(["--samplers", "", "--seeds", "1", "--trials", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "nb201_peers: error: " + peers.MISSING_PEERS and "pip install -e '.[peers]'" in err
