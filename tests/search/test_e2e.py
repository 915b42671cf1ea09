"""End to end on real data: a tiny real search (embedded Ray, Optuna + SQLite) on the shared CIFAR-10
subset, then `nas export`, `nas show` and a 1-epoch `nas retrain`, all through the CLI."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from space import build_model, from_yaml


def nas(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"nas {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="nasray", dir="/tmp")  # short: Ray's socket paths are length-limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_search_export_show_retrain_on_cifar(tmp_path, cifar_dir, ray_tmp):
    cfg = {
        "name": "e2e",
        "data": {"name": "cifar10", "data_dir": str(cifar_dir), "val_fraction": 0.2},
        "space": {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5],
                  "depth": [1], "order": ["pre", "post"]},
        "objectives": ["val_acc", "macs", "latency_ms"],
        "proxy": {"epochs": 1, "batch_size": 128, "lr": 0.05},
        "latency": {"batch_sizes": [1], "warmup": 1, "repeats": 3},
        "search": {"sampler": "random", "n_trials": 3, "max_concurrent": 2, "seed": 0},
        "ray": {"num_cpus": 2, "temp_dir": ray_tmp},
    }
    cfg_path = tmp_path / "e2e.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    out = nas("search", str(cfg_path), "--results", str(results), cwd=tmp_path).stdout
    run = results / "e2e"
    assert "[  3/3]" in out

    # storage: every trial finished, values are real numbers
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{run / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        acc, macs, lat = t.values
        assert 0.1 < acc <= 1.0 and macs > 0 and lat > 0
        assert from_yaml(t.user_attrs["arch_yaml"]).arch_id == t.user_attrs["arch_id"]

    # run folder
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert [r["state"] for r in rows] == ["COMPLETE"] * 3 and all(r["arch_id"] for r in rows)
    front = sorted(p.stem for p in (run / "pareto").glob("*.yaml"))
    assert front and (run / "best.yaml").is_file() and (run / "pareto.png").stat().st_size > 1000
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "e2e"
    assert len(list((run / "ray").rglob("events.out.tfevents*"))) == 3  # per-trial TensorBoard logs (default)

    # export re-derives the same front and best from the storage alone
    best_before = (run / "best.yaml").read_text()
    shutil.rmtree(run / "pareto")
    (run / "best.yaml").unlink()
    (run / "trials.csv").unlink()
    nas("export", str(run), cwd=tmp_path)
    assert sorted(p.stem for p in (run / "pareto").glob("*.yaml")) == front
    assert (run / "best.yaml").read_text() == best_before
    assert (run / "trials.csv").is_file()

    # show: JSON keys and numbers agree with a fresh count
    shown = json.loads(nas("show", str(run / "best.yaml"), "--json", cwd=tmp_path).stdout)
    arch = from_yaml(best_before)
    model = build_model(arch, num_classes=10, in_chans=3)
    assert shown["arch_id"] == arch.arch_id
    assert shown["params"] == sum(p.numel() for p in model.parameters())
    assert shown["macs"] > 0 and shown["flops"] >= shown["macs"]

    # retrain 1 epoch on the full training split, test accuracy on the test split
    rt = tmp_path / "retrain"
    nas("retrain", str(run / "best.yaml"), "--data", "cifar10", "--data-dir", str(cifar_dir), "--epochs", "1",
        "--out", str(rt), "--threads", "2", cwd=tmp_path)
    metrics = json.loads((rt / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0.1 < metrics["test_acc"] <= 1.0
    state = torch.load(rt / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    weights = torch.load(rt / "model.pt", weights_only=True)
    model.load_state_dict(weights)
