"""The metric table drives the search: a metric registered by one module outside ``evaluators/`` (named in the
config's ``plugins``) is an objective of a real search, recorded in the storage, a trials.csv column and part of
the exported front, with no edit in search/. Also the limit keys the table makes and the constraint path."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import optuna
import pytest

from search import ConfigError, parse_config
from search.limits import ConstraintsConfig, SelectConfig
from space import Arch, Head, Stage, Stem, build_model, from_yaml

from ._tiny_run import run_search

ROOT = Path(__file__).resolve().parents[2]


def blocks_of(arch_yaml: str) -> int:
    """Blocks in the built network, counted independently of the spec's depths: children of each stage."""
    model = build_model(from_yaml(arch_yaml), num_classes=10, in_chans=1)
    return sum(len(stage) for stage in model.stages)


def non_dominated(points: dict[int, tuple[float, float]]) -> set[int]:
    """Trials whose (val_acc ↑, depth ↓) no other trial beats in both (and strictly in one)."""
    def beats(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a != b
    return {n for n, p in points.items() if not any(beats(q, p) for m, q in points.items() if m != n)}


def test_a_plugin_metric_is_an_objective_of_a_real_search(tmp_path):
    cfg = {
        "name": "depth", "plugins": ["tests.search.depth_metric"],
        "data": {"name": "digits"},
        "space": {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25], "depth": [1, 2, 3]},
        "objectives": ["val_acc", "depth"],
        "proxy": {"epochs": 1, "batch_size": 64},
        "search": {"sampler": "random", "n_trials": 3, "max_concurrent": 1, "seed": 0},
        "ray": {"num_cpus": 1},
    }
    run, proc = run_search(cfg, tmp_path, prefix="nasmt")

    trials = optuna.load_study(study_name="depth", storage=f"sqlite:///{run / 'study.db'}").get_trials()
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        blocks = blocks_of(t.user_attrs["arch_yaml"])
        assert t.values[1] == blocks and t.user_attrs["depth"] == blocks  # the objective and the recorded attr
        assert f"depth={blocks}" in proc.stdout  # the progress line, formatted by the metric's fmt
    assert len({t.values[1] for t in trials}) > 1, "the sampled depths should differ"

    rows = {int(r["number"]): r for r in csv.DictReader(open(run / "trials.csv"))}
    assert list(next(csv.reader(open(run / "trials.csv"))))[3:5] == ["val_acc", "depth"]
    assert all(float(rows[t.number]["depth"]) == t.values[1] for t in trials)

    front = non_dominated({n: (float(r["val_acc"]), float(r["depth"])) for n, r in rows.items()})
    summary = json.loads((run / "summary.json").read_text())
    assert summary["objectives"] == ["val_acc", "depth"] and summary["directions"] == ["max", "min"]
    assert {f["number"] for f in summary["front"]} == front
    assert all(f["depth"] == float(rows[f["number"]]["depth"]) for f in summary["front"])
    assert {p.stem for p in (run / "pareto").glob("*.yaml")} == {rows[n]["arch_id"] for n in front}
    assert summary["metrics"]["depth"] == {"label": "blocks", "unit": ""}


def test_unknown_plugin_is_one_line_naming_the_field():
    with pytest.raises(ConfigError, match=r"^plugins: item 0: cannot import 'no_such_plugin_mod'"):
        parse_config({"plugins": ["no_such_plugin_mod"]})


def test_todays_limit_keys_are_made_from_the_table():
    assert {"max_macs", "max_params", "max_flops", "max_latency_ms"} <= set(SelectConfig.model_fields)
    assert {"max_macs", "max_params", "max_latency_ms"} <= set(ConstraintsConfig.model_fields)
    cfg = parse_config({"select": {"max_macs": 2e6, "max_latency_ms": 5}, "constraints": {"max_params": 1e5}})
    assert cfg.needed_metrics == ["val_acc", "macs", "params", "latency_ms"]
    with pytest.raises(ConfigError, match=r"^constraints\.max_val_acc: unknown key; valid keys: max_params"):
        parse_config({"constraints": {"max_val_acc": 0.5}})


def test_a_constraint_stops_the_trial_before_training():
    from search.evaluation import ArchEvaluation, ConstraintViolation

    arch = Arch(stem=Stem(width=8), stages=(Stage(block="basic", depth=1, width=8, stride=1),), head=Head(),
                input_size=8)
    params = sum(p.numel() for p in build_model(arch, num_classes=10, in_chans=1).parameters())
    base = {"data": {"name": "digits", "image_size": 8}, "proxy": {"epochs": 50}, "latency": {"isolate": False}}
    evaluate = ArchEvaluation(parse_config({**base, "constraints": {"max_params": params - 1}}), threads=1)
    start = time.perf_counter()
    with pytest.raises(ConstraintViolation, match=rf"^constraints\.max_params: {params} > {params - 1}$"):
        evaluate(arch)
    assert time.perf_counter() - start < 5  # 50 epochs were never started
    out = ArchEvaluation(parse_config({**base, "proxy": {"epochs": 1}, "constraints": {"max_params": params}}),
                         threads=1)(arch)
    assert out["params"] == params and 0.0 <= out["val_acc"] <= 1.0
