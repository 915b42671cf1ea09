"""``n_trials`` counts distinct architectures: a re-proposed one is answered from the stored trial (the sampler
still learns from it) and never evaluated again; an exhausted space ends the search with one line."""
from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path

import optuna
import pytest
from ray.tune.search import Searcher

from search import SearchSpace, parse_config
from search.run import DefineByRun, budget_used, run_search
from search.searcher import MAX_RESAMPLES, NasOptunaSearch
from space import from_yaml

SPACE = {"strides": [1, 2, 2], "base_widths": [16, 32, 64], "width_mult": [0.25, 0.5], "depth": [1, 2],
         "order": ["pre", "post"], "per_stage": []}
CHOICES = {"width_mult": [0.25, 0.5], "depth": [1, 2], "order.basic": ["pre", "post"]}  # 8 points, by hand


def _space(**kw) -> SearchSpace:
    return SearchSpace(parse_config({"space": {**SPACE, **kw}}).space, input_size=16)


def _all_archs() -> set[str]:
    """The space's architectures, from every combination of the parameters listed by hand."""
    sp = _space()
    return {sp.sample(optuna.trial.FixedTrial(dict(zip(CHOICES, combo)))).arch_id
            for combo in itertools.product(*CHOICES.values())}


class LoggedEval:
    """Cheap made-up metrics of an architecture; appends its arch_id to ``log`` on every evaluation."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, arch, report=None) -> dict:
        with open(self.log, "a") as f:
            f.write(arch.arch_id + "\n")
        width = sum(s.width * s.depth for s in arch.stages)
        return {"arch_id": arch.arch_id, "val_acc": 1.0 - 1.0 / width, "macs": float(width)}


def _searcher(sampler: optuna.samplers.BaseSampler, space: SearchSpace | None = None) -> NasOptunaSearch:
    return NasOptunaSearch(space=DefineByRun(space or _space(), ["val_acc", "macs"]), metric=["val_acc", "macs"],
                           mode=["max", "min"], sampler=sampler, storage=optuna.storages.InMemoryStorage(),
                           study_name="dup")


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _drive(searcher: NasOptunaSearch, log: Path, n: int = 20) -> list[str]:
    """Ray's calls (suggest, then on_trial_complete), made here in order; the architectures handed out."""
    handed = []
    for i in range(n):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        handed.append(from_yaml(config["arch_yaml"]).arch_id)
        searcher.on_trial_complete(f"t{i}", LoggedEval(log)(from_yaml(config["arch_yaml"])))
    return handed


def test_the_searcher_hands_out_each_architecture_once_then_finishes(tmp_path):
    searcher = _searcher(optuna.samplers.RandomSampler(seed=0))
    handed = _drive(searcher, tmp_path / "log")
    assert sorted(handed) == sorted(_all_archs()) and len(handed) == 8
    assert searcher.suggest("again") == Searcher.FINISHED
    assert searcher.exhausted == "search space exhausted: all 8 architectures evaluated or running"
    trials = searcher.study.trials
    copies = [t for t in trials if "cached_from" in t.user_attrs]
    assert len(copies) == searcher.duplicates > 0 and budget_used(searcher.study) == 8
    for t in copies:  # recorded like their source, so the sampler learns from the re-proposal
        src = trials[t.user_attrs["cached_from"]]
        assert "cached_from" not in src.user_attrs and src.number < t.number
        assert (t.state, t.values, t.user_attrs["arch_id"]) == (src.state, src.values, src.user_attrs["arch_id"])


def test_a_filtered_space_stops_after_a_run_of_re_proposals(tmp_path):
    """G-Ghost needs depth >= 3: depth 1 re-maps to 3, so the space's size (4, an upper bound) is never reached."""
    space = _space(block=["g_ghost"], order=["post"], depth=[1, 3])
    assert space.size() == 4
    searcher = _searcher(optuna.samplers.RandomSampler(seed=0), space)
    handed = _drive(searcher, tmp_path / "log")
    archs = {t.user_attrs["arch_id"]: from_yaml(t.user_attrs["arch_yaml"]) for t in searcher.study.trials
             if "arch_yaml" in t.user_attrs}
    assert len(handed) == len(set(handed)) == 2 and {s.depth for a in handed for s in archs[a].stages} == {3}
    assert searcher.exhausted == (f"search space exhausted: the last {MAX_RESAMPLES} proposals were architectures "
                                  f"already evaluated or running; stopping with 2 distinct architecture(s)")
    assert all("cached_from" in t.user_attrs for t in searcher.study.trials[-MAX_RESAMPLES:])


def test_a_running_architecture_is_not_handed_out_twice(tmp_path):
    searcher = _searcher(optuna.samplers.RandomSampler(seed=1))
    first = searcher.suggest("a")
    held = from_yaml(first["arch_yaml"]).arch_id
    others = [searcher.suggest(f"b{i}") for i in range(7)]  # nothing finished: the other seven, then FINISHED
    assert sorted([held, *(from_yaml(c["arch_yaml"]).arch_id for c in others)]) == sorted(_all_archs())
    assert searcher.suggest("c") == Searcher.FINISHED
    running = [t for t in searcher.study.trials if t.state.name == "FAIL"]
    assert running and all(t.user_attrs["fail_reason"].startswith("duplicate: same architecture as trial")
                           for t in running)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    tmp = tempfile.mkdtemp(prefix="nasdup", dir="/tmp")  # short: Ray's socket paths are length-limited
    ray.init(num_cpus=2, _temp_dir=tmp, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_budget_of_the_space_size_evaluates_each_once_and_a_larger_one_stops_with_one_line(tmp_path, ray_local):
    log = tmp_path / "evaluated.txt"
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    lines: list[str] = []

    def run(n: int) -> optuna.Study:
        return run_search(_space(), LoggedEval(log), objectives=["val_acc", "macs"],
                          sampler=optuna.samplers.RandomSampler(seed=n), storage=storage, study_name="dup",
                          n_trials=n, run_dir=tmp_path, max_concurrent=2, out=lines.append)

    run(8)
    evaluated = log.read_text().split()
    assert sorted(evaluated) == sorted(_all_archs())  # each of the 8 exactly once
    assert not any("exhausted" in line for line in lines)
    lines.clear()
    study = run(12)  # resumed with a budget past the space
    assert log.read_text().split() == evaluated  # nothing evaluated again
    assert [line for line in lines if "exhausted" in line] == [
        "search space exhausted: all 8 architectures evaluated or running"]
    assert budget_used(study) == 8
