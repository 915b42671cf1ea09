"""NAS-Bench-201 through the whole pipeline with no training: configs/nb201.yaml's space (a skeleton whose six
edge ops are the choices), val_acc looked up in the table, MACs counted, then export and report."""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

from evaluators.nb201_lookup import Nb201TableEvaluator
from evaluators.nb201_table import MISSING, PACKAGE, load_nb201_table
from search import ConfigError, load_config, parse_config
from search.space_def import SearchSpace
from space import build_model, from_yaml, nb201, wrn
from space.blocks.nb201 import NB201_OPS
from space.complexity import count_complexity

ROOT = Path(__file__).resolve().parents[2]
needs_table = pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None, reason=MISSING)


def test_the_config_opens_six_edges_under_stable_names():
    cfg = load_config(ROOT / "configs" / "nb201.yaml")
    space = SearchSpace(cfg.space, input_size=32)
    assert space.size() == 5 ** 6
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        arch = space.sample(trial)
        ops = tuple(arch.stages[0].block_kw["ops"])
        assert arch == nb201(ops)  # the benchmark's network around the drawn cell, nothing else changed
        assert trial.params == {f"nb201_cell.ops[{k}]": op for k, op in enumerate(ops)}
        study.tell(trial, 0.0)
    dists = {n: d.choices for t in study.trials for n, d in t.distributions.items()}
    assert dists == {f"nb201_cell.ops[{k}]": NB201_OPS for k in range(6)}  # one name, one distribution


@needs_table
def test_the_table_is_looked_up_by_cell_and_refuses_other_networks():
    table = load_nb201_table()
    ev = Nb201TableEvaluator(column="qat_accuracy")
    ops = ("conv3x3", "conv3x3", "skip", "conv1x1", "avg_pool", "none")
    assert ev.evaluate(nb201(ops)) == {"val_acc": table[ops].qat_accuracy / 100}
    with pytest.raises(ValueError, match="differs from NAS-Bench-201's network"):
        ev.evaluate(nb201(ops, cells=3))
    with pytest.raises(ValueError, match="no nb201_cell stage"):
        ev.evaluate(wrn(10, 1))


def test_table_needs_cifar10_shaped_data():
    with pytest.raises(ConfigError, match=r"^metric_evaluators\.val_acc: nb201_table holds CIFAR-10"):
        from search.evaluation import ArchEvaluation

        ArchEvaluation(parse_config({"metric_evaluators": {"val_acc": "nb201_table"}}))


@needs_table
def test_a_real_search_on_the_table(tmp_path, cifar_dir):
    cfg = yaml.safe_load((ROOT / "configs" / "nb201.yaml").read_text())
    ray_tmp = tempfile.mkdtemp(prefix="nasnb", dir="/tmp")
    cfg.update(data={"name": "cifar10", "data_dir": str(cifar_dir)},
               ray={"num_cpus": 2, "temp_dir": ray_tmp, "trial_logs": False},
               search={"sampler": "tpe", "n_trials": 12, "max_concurrent": 2, "seed": 1})
    (tmp_path / "nb.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        cmd = [sys.executable, "-m", "search.cli", "search", str(tmp_path / "nb.yaml"), "--results", "results"]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, f"search failed:\n{proc.stdout}\n{proc.stderr}"
    assert "15,625 architectures" in proc.stdout
    run = tmp_path / "results" / "nb201"
    assert not list((run / "ray").rglob("result.json")) and not list((run / "ray").rglob("events.out.tfevents*"))
    assert "Could not fetch metrics" not in proc.stdout + proc.stderr  # Tune's result grid is not left to complain
    stored = optuna.load_study(study_name="nb201", storage=f"sqlite:///{run / 'study.db'}").get_trials()
    # n_trials counts distinct architectures evaluated; a re-proposal (TPE may repeat its best once the startup
    # trials are done, depending on which of the two running trials finishes first) is answered from its source:
    # its values when finished, FAIL when still running
    evaluated = [t for t in stored if "cached_from" not in t.user_attrs]
    assert len(evaluated) == 12 and len({t.user_attrs["arch_id"] for t in evaluated}) == 12
    assert all(t.state.name == "COMPLETE" for t in evaluated)
    for t in stored:
        if "cached_from" in t.user_attrs:
            src = stored[t.user_attrs["cached_from"]]
            assert "cached_from" not in src.user_attrs and src.user_attrs["arch_id"] == t.user_attrs["arch_id"]
            if t.state.name == "COMPLETE":
                assert t.values == src.values
            else:
                assert t.state.name == "FAIL" and t.user_attrs["fail_reason"].endswith("still running")
    trials = [t for t in stored if t.state.name == "COMPLETE"]
    table = load_nb201_table()
    for t in trials:
        arch = from_yaml(t.user_attrs["arch_yaml"])
        ops = tuple(t.params[f"nb201_cell.ops[{k}]"] for k in range(6))
        assert t.values[0] == pytest.approx(table[ops].baseline_accuracy / 100)
        macs = count_complexity(build_model(nb201(ops), num_classes=10, in_chans=3), input_size=32, in_chans=3)["macs"]
        assert arch == nb201(ops) and t.values[1] == macs
        assert "epochs" not in t.user_attrs and "train_seconds" not in t.user_attrs  # nothing was trained
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert len(rows) == len(stored) and (run / "summary.json").is_file() and (run / "best.yaml").is_file()
    best = max(trials, key=lambda t: (t.values[0], -t.values[1]))
    assert from_yaml((run / "best.yaml").read_text()).arch_id == best.user_attrs["arch_id"]
    rep = subprocess.run([sys.executable, "-m", "search.cli", "report", str(run)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
