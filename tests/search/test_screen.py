"""Proxy-guided search (``search.screen``): the driver scores each batch of candidates with a cheap metric, trains
the best and records the others PRUNED, untrained and uncounted."""
from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from ray.tune.search import Searcher

from evaluators.nb201_table import MISSING, PACKAGE
from search import ConfigError, SearchSpace, parse_config
from search.lease import driver_id
from search.resume import fingerprint, fingerprint_change
from search.run import DefineByRun, budget_used, close_interrupted, search_from_config
from search.searcher import NasOptunaSearch
from space import build_model, from_yaml

ROOT = Path(__file__).resolve().parents[2]
needs_table = pytest.mark.skipif(importlib.util.find_spec(PACKAGE) is None, reason=MISSING)
SPACE = {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5, 1.0], "depth": [1, 2, 3],
         "order": ["pre", "post"]}


def _params(arch) -> int:
    return sum(p.numel() for p in build_model(arch, num_classes=10, in_chans=3).parameters())


@needs_table
def test_a_screened_search_trains_the_best_candidate_of_each_batch_and_counts_only_those(tmp_path, cifar_dir):
    raw = yaml.safe_load((ROOT / "configs" / "nb201.yaml").read_text())
    ray_tmp = tempfile.mkdtemp(prefix="nasscr", dir="/tmp")  # short: Ray's socket paths are length-limited
    raw.update(data={"name": "cifar10", "data_dir": str(cifar_dir)},
               ray={"num_cpus": 1, "temp_dir": ray_tmp, "trial_logs": False},
               search={"sampler": "tpe", "n_trials": 5, "max_concurrent": 1, "seed": 3,
                       "screen": {"metric": "params", "candidates": 3}})
    lines: list[str] = []
    try:
        study = search_from_config(parse_config(raw), run_dir=tmp_path / "run", out=lines.append)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    trials = study.get_trials(deepcopy=False)
    assert sum(t.state.name == "COMPLETE" for t in trials) == 5 and budget_used(study) == 5  # what reached Ray
    assert not any(t.state.name == "RUNNING" for t in trials)
    batches = [t for t in trials if "cached_from" not in t.user_attrs]  # one at a time: batches of 3, in order
    assert len(batches) == 15
    for k in range(0, 15, 3):
        batch = batches[k:k + 3]
        params = [_params(from_yaml(t.user_attrs["arch_yaml"])) for t in batch]  # counted here, independently
        assert [t.user_attrs["params"] for t in batch] == params
        chosen = [i for i, t in enumerate(batch) if t.state.name == "COMPLETE"]
        assert len(chosen) == 1
        top = batch[chosen[0]]
        assert params[chosen[0]] == min(params) and top.user_attrs["screen_seconds"] > 0  # params: lower is better
        assert "screened_out" not in top.user_attrs
        for t in batch:
            if t is not top:
                assert t.state.name == "PRUNED" and not t.intermediate_values
                assert t.user_attrs["screened_out"].startswith("params ")
                assert t.user_attrs["screened_out"].endswith(f"of trial {top.number} (best of 3)")
    summary = [line for line in lines if line.startswith("finished ")]
    assert summary and summary[0].endswith("; 10 candidate(s) screened out by params (not trained, not counted)")
    with open(tmp_path / "run" / "trials.csv") as f:
        reasons = {int(r["number"]): r["pruned_reason"] for r in csv.DictReader(f)}
    assert all(reasons[t.number] == (f"screened out: {t.user_attrs['screened_out']}" if t.state.name == "PRUNED"
                                     else "") for t in trials)


class FakeScreen:
    """A screen scoring the sum of the stages' depths (synflow, higher is better); raises KeyboardInterrupt on call
    ``interrupt_at`` (a Ctrl-C while screening)."""

    metric, candidates = "synflow", 3

    def __init__(self, interrupt_at: int | None = None, scores: list[float] | None = None) -> None:
        self.calls, self.interrupt_at, self.scores = 0, interrupt_at, scores

    def __call__(self, arch) -> float:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        if self.scores is not None:
            return self.scores[self.calls - 1]
        return float(sum(s.depth for s in arch.stages))


def _searcher(screen: FakeScreen, owner: str | None = None) -> NasOptunaSearch:
    space = SearchSpace(parse_config({"space": SPACE}).space, input_size=16)
    return NasOptunaSearch(space=DefineByRun(space, ["val_acc", "macs"], owner), metric=["val_acc", "macs"],
                           mode=["max", "min"], sampler=optuna.samplers.RandomSampler(seed=0),
                           storage=optuna.storages.InMemoryStorage(), study_name="screen", screen=screen)


def test_ties_go_to_the_earliest_candidate_and_the_others_are_told_at_once():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = _searcher(FakeScreen(scores=[2.0, 5.0, 5.0, 1.0, float("nan"), 0.5]))
    first, second = searcher.suggest("a"), searcher.suggest("b")
    trials = searcher.study.trials
    assert [t.state.name for t in trials] == ["PRUNED", "RUNNING", "PRUNED", "RUNNING", "PRUNED", "PRUNED"]
    assert first["arch_yaml"] == trials[1].user_attrs["arch_yaml"] and trials[1].user_attrs["synflow"] == 5.0
    assert trials[0].user_attrs["screened_out"] == "synflow 2 < 5 of trial 1 (best of 3)"
    assert trials[2].user_attrs["screened_out"] == "synflow 5 = 5 of trial 1 (best of 3)"  # a tie: the earlier
    assert second["arch_yaml"] == trials[3].user_attrs["arch_yaml"]
    assert trials[4].user_attrs["screened_out"] == "synflow not computed (not a number); trial 3 scored 1 (best of 3)"
    assert searcher.screened == 4 and budget_used(searcher.study) == 0  # nothing finished that counts


def test_a_ctrl_c_while_screening_leaves_no_running_candidate_behind():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    owner = driver_id()
    searcher = _searcher(FakeScreen(interrupt_at=5), owner=owner)
    assert searcher.suggest("a") is not None
    with pytest.raises(KeyboardInterrupt):
        searcher.suggest("b")  # interrupted at its second candidate's score
    study = searcher.study
    asked = study.trials[3:]
    assert len(asked) == 3 and all(t.state.name == "RUNNING" and t.user_attrs["driver"] == owner for t in asked)
    assert close_interrupted(study, owner=owner) == 4  # what run_search does on Ctrl-C: the Ray trial and the batch
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert all(t.user_attrs.get("interrupted") for t in study.trials[3:6])
    assert budget_used(study) == 0
    requeued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))  # evaluated (re-screened) first on resume
    assert sorted(t.user_attrs["requeued_from"] for t in requeued) == [1, 3, 4, 5]


def test_a_re_proposed_screened_out_architecture_is_answered_from_it():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = _searcher(FakeScreen())
    handed = [searcher.suggest(f"t{i}") for i in range(12)]
    trials = searcher.study.trials
    copies = [t for t in trials if "cached_from" in t.user_attrs and trials[t.user_attrs["cached_from"]].state.name
              == "PRUNED"]
    assert copies, "no screened-out architecture was proposed again (pick another seed)"
    for t in copies:
        src = trials[t.user_attrs["cached_from"]]
        assert t.state.name == "PRUNED" and t.user_attrs["screened_out"] == src.user_attrs["screened_out"]
        assert t.user_attrs["arch_id"] == src.user_attrs["arch_id"]
    assert Searcher.FINISHED not in handed


@pytest.mark.parametrize("screen, problem", [
    ({"metric": "speed"}, "unknown metric 'speed'"),
    ({"metric": "val_acc"}, "'val_acc' is not cheap under this config"),
    ({"metric": "latency_ms"}, "set latency.mode: predict"),
    ({"metric": "epochs"}, "no direction"),
])
def test_a_metric_that_is_unknown_or_not_cheap_is_refused_naming_the_field(screen, problem):
    with pytest.raises(ConfigError) as info:
        parse_config({"search": {"screen": screen}})
    msg = str(info.value)
    assert msg.startswith("search.screen.metric: ") and problem in msg and "\n" not in msg
    assert msg.endswith("valid: params, flops, macs, synflow, jacob_cov, naswot, grad_norm, snip, grasp, fisher")


def test_one_candidate_is_refused_and_the_cli_exits_2_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"^search\.screen\.candidates: must be greater than or equal to 2, got 1$"):
        parse_config({"search": {"screen": {"metric": "synflow", "candidates": 1}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"search": {"screen": {"metric": "val_acc"}}}))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(bad), "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "search.screen.metric" in lines[0], proc.stderr
    assert not (tmp_path / "search").exists()


def test_turning_screening_on_or_off_is_refused_on_resume(tmp_path):
    off = fingerprint(parse_config({}))
    on = fingerprint(parse_config({"search": {"screen": {"metric": "synflow"}}}))
    assert fingerprint_change(off, on, run_dir=tmp_path).startswith(
        'search.screen: the run was started with null, the config says {"metric": "synflow", "candidates": 4}')
    assert fingerprint_change(on, off, run_dir=tmp_path).startswith(
        'search.screen: the run was started with {"metric": "synflow", "candidates": 4}, the config says null')
    assert fingerprint_change(on, on, run_dir=tmp_path) is None


def test_the_driver_scores_synflow_with_the_trials_data_and_seed_and_pickles_without_it():
    import pickle

    import torch

    from evaluators.zero_cost import score
    from evaluators.zero_cost_metrics import training_batch
    from search.evaluation import ArchEvaluation, Screen, load_data
    from space import wrn

    cfg = parse_config({"search": {"seed": 5, "screen": {"metric": "synflow", "candidates": 2}},
                        "evaluators": {"zero_cost": {"batch_size": 16}}})
    evaluation = ArchEvaluation(cfg, threads=1)
    screen = Screen.from_config(evaluation)
    assert "synflow" not in evaluation.names and "synflow" in evaluation._extra  # built now, for the driver only
    arch = wrn(10, 1)
    data = load_data(cfg)
    batch = training_batch(data, batch_size=16, val_fraction=cfg.data.val_fraction, seed=5)
    torch.manual_seed(5)
    model = build_model(arch, num_classes=data.num_classes, in_chans=data.in_chans)
    assert screen(arch) == pytest.approx(score("synflow", model, batch, seed=5), rel=1e-6)
    again = pickle.loads(pickle.dumps(screen))  # a Ray Tune checkpoint of the searcher
    assert again._evaluator is None and again.evaluation._extra == {} and again(arch) == screen(arch)
    assert Screen.from_config(ArchEvaluation(parse_config({}))) is None
