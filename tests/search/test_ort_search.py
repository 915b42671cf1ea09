"""ONNX Runtime latency in a real search (Ray Tune + Optuna + storage, digits): ``latency_ms`` measured with
``latency.device: ort-cpu`` is an objective like the torch one, recorded with its device and cached under it."""
from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_ort_latency_is_an_objective_of_a_real_search(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="nasort", dir="/tmp")
    cfg = {
        "name": "ort", "data": {"name": "digits"},
        "space": {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5], "depth": [1, 2]},
        "objectives": ["val_acc", "latency_ms"],
        "latency": {"device": "ort-cpu", "warmup": 1, "repeats": 5, "lock_dir": str(tmp_path / "locks")},
        "proxy": {"epochs": 1, "batch_size": 64},
        "search": {"sampler": "random", "n_trials": 3, "max_concurrent": 1, "seed": 3},
        "ray": {"num_cpus": 1, "temp_dir": ray_tmp},
    }
    (tmp_path / "ort.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(tmp_path / "ort.yaml"), "--results",
                               str(tmp_path / "results")], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, f"search failed:\n{proc.stdout}\n{proc.stderr}"
    run = tmp_path / "results" / "ort"
    study = optuna.load_study(study_name="ort", storage=f"sqlite:///{run / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(t.user_attrs["latency_device"] == "ort-cpu" and t.values[1] > 0 for t in trials)
    # the run's latency cache holds each architecture under the ort-cpu device, with the trial's value
    with sqlite3.connect(run / "latency_cache.sqlite") as con:
        cached = {arch_id: (json.loads(key), json.loads(metrics)["latency_ms"])
                  for key, arch_id, metrics in con.execute("SELECT key, arch_id, metrics FROM latency")}
    for t in trials:
        key, ms = cached[t.user_attrs["arch_id"]]
        assert key[1] == "ort-cpu" and ms == pytest.approx(t.values[1])
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert sorted(float(r["latency_ms"]) for r in rows) == pytest.approx(sorted(t.values[1] for t in trials))
