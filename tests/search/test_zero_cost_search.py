"""Zero-cost proxies are metrics of the table: an objective of a real search (Ray Tune + Optuna + storage), scored
on a batch of the run's training split (never the validation split), and settings through ``evaluators:``."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from evaluators.zero_cost import score
from evaluators.zero_cost_metrics import training_batch
from search import ConfigError, parse_config
from space import build_model, from_yaml
from train.data import load_dataset, stratified_split, to_unit_float

from ._tiny_run import run_search

ROOT = Path(__file__).resolve().parents[2]


def test_synflow_is_an_objective_of_a_real_search(tmp_path):
    cfg = {
        "name": "zc", "data": {"name": "digits"},
        "space": {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5], "depth": [1, 2]},
        "objectives": ["val_acc", "synflow"],
        "evaluators": {"zero_cost": {"batch_size": 16}},
        "proxy": {"epochs": 1, "batch_size": 64},
        "search": {"sampler": "random", "n_trials": 3, "max_concurrent": 1, "seed": 3},
        "ray": {"num_cpus": 1},
    }
    run, _ = run_search(cfg, tmp_path, prefix="naszc")
    study = optuna.load_study(study_name="zc", storage=f"sqlite:///{run / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)

    data = load_dataset("digits")
    x, y = training_batch(data, batch_size=16, val_fraction=0.2, seed=3)
    train_idx, val_idx = stratified_split(data.train.labels.numpy(), 0.2, 3)
    images = data.train.normalise(to_unit_float(data.train.images))
    assert all(any(torch.equal(img, images[i]) for i in train_idx) for img in x)  # training images ...
    assert not any(torch.equal(img, images[i]) for img in x for i in val_idx)  # ... and no validation image
    for t in trials:  # the stored objective is the proxy of the network built with the run's seed on that batch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            model = build_model(from_yaml(t.user_attrs["arch_yaml"]), num_classes=10, in_chans=1)
        assert t.values[1] == pytest.approx(score("synflow", model, (x, y), seed=3), rel=1e-6)
        assert t.values[1] > 0
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert np.allclose(sorted(float(r["synflow"]) for r in rows), sorted(t.values[1] for t in trials), rtol=1e-6)


def test_a_proxy_is_a_hard_constraint_and_a_select_budget():
    cfg = parse_config({"constraints": {"min_snip": 1.0}, "select": {"min_synflow": 2.0}})
    assert cfg.needed_metrics == ["val_acc", "macs", "snip", "synflow"]


@pytest.mark.parametrize("section, message", [
    ({"evaluators": {"zero_cost": {"batch_size": 1}}}, r"^evaluators\.zero_cost\.batch_size: must be greater"),
    ({"evaluators": {"zero_cost": {"size": 8}}}, r"^evaluators\.zero_cost\.size: unknown key; valid keys: batch_size"),
    ({"evaluators": {"zerocost": {}}}, r"^evaluators\.zerocost: no evaluator reads these settings; valid: .*zero_cost"),
    ({"metric_evaluators": {"val_acc": "complexity"}}, r"^metric_evaluators\.val_acc: must be one of accuracy"),
    ({"metric_evaluators": {"acc": "accuracy"}}, r"^metric_evaluators\.acc: unknown metric; valid: val_acc"),
])
def test_bad_evaluator_settings_are_one_line_naming_the_field(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(section)


def test_settings_default_when_the_key_is_absent():
    assert parse_config({}).settings_for("synflow").batch_size == 64
