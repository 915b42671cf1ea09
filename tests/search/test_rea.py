"""Regularized evolution (search/samplers/rea.py): one-parameter mutation, ageing (the oldest leaves, not the worst),
better than random on a toy problem with a known optimum, and a resume that sees the same population."""
from __future__ import annotations

import datetime
import statistics

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.study._multi_objective import _fast_non_domination_rank
from optuna.trial import TrialState

from search import make_sampler
from search.samplers.rea import CHILD_ATTR, MUTATED_ATTR, PARENT_ATTR, RegularizedEvolutionSampler, front_ranks

OPS = ["none", "skip", "conv1x1", "conv3x3", "avg_pool"]
DIST = CategoricalDistribution(OPS)
NAMES = [f"e{i}" for i in range(6)]


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def toy(trial: optuna.Trial) -> float:
    """Six categorical edges; the optimum (6.0) is conv3x3 everywhere; each edge scores by its op alone."""
    score = {"none": 0.0, "skip": 0.3, "conv1x1": 0.6, "conv3x3": 1.0, "avg_pool": 0.1}
    return sum(score[trial.suggest_categorical(n, OPS)] for n in NAMES)


def finished(number: int, values: list[float], params: dict, minute: float) -> optuna.trial.FrozenTrial:
    """A COMPLETE trial that finished ``minute`` minutes after a fixed start."""
    t0 = datetime.datetime(2024, 1, 1)
    return optuna.trial.FrozenTrial(
        number=number, state=TrialState.COMPLETE, value=None, values=values, datetime_start=t0,
        datetime_complete=t0 + datetime.timedelta(minutes=minute), params=params,
        distributions={n: DIST for n in params}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=number)


def test_a_child_differs_from_its_parent_in_exactly_one_parameter():
    study = optuna.create_study(direction="maximize", sampler=RegularizedEvolutionSampler(seed=0))
    study.optimize(toy, n_trials=60)
    children = [t for t in study.trials if PARENT_ATTR in t.system_attrs]
    assert len(children) >= 45  # random only until 10 trials are COMPLETE
    for t in children:
        parent = study.trials[t.system_attrs[PARENT_ATTR]]
        changed = [n for n in NAMES if t.params[n] != parent.params[n]]
        assert changed == [t.system_attrs[MUTATED_ATTR]], (t.params, parent.params)
        assert parent.number < t.number


def test_ageing_removes_the_oldest_not_the_worst():
    """Population 3: the worst trial finished last, so it survives; the best finished first, so it has left."""
    sampler = RegularizedEvolutionSampler(population_size=3, sample_size=40, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    p = {n: "skip" for n in NAMES}
    # finish order (minutes): #0 best at 1, #1 at 2, #2 at 3, #3 worst at 4; #4 finished before #3 though numbered later
    history = [(0, 5.0, 1), (1, 2.0, 2), (2, 3.0, 3), (4, 2.5, 3.5), (3, 0.5, 4)]
    for number, value, minute in history:
        study.add_trial(finished(number, [value], p, minute))
    pop = sampler.population(study)
    values = [t.value for t in pop]
    assert values == [3.0, 2.5, 0.5]  # oldest first; 5.0 and 2.0 aged out; the worst (0.5) is still there
    # 40 draws from 3 members: the tournament's winner is the best survivor, never the aged-out best
    assert {sampler.tournament(study, pop).value for _ in range(50)} == {3.0}


def test_front_ranks_match_optuna_non_domination_ranks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        vals = rng.integers(0, 6, size=(12, 2)).astype(float)
        ours = front_ranks(vals.tolist(), [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE])
        ref = _fast_non_domination_rank(vals * np.array([-1.0, 1.0]))
        assert ours == ref.tolist()


def _best_after(name: str, seed: int, n: int) -> float:
    sampler = make_sampler(name, seed=seed, n_trials=n)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(toy, n_trials=n)
    return study.best_value


def test_rea_beats_random_on_average_over_seeds():
    rea = [_best_after("rea", s, 60) for s in range(8)]
    rnd = [_best_after("random", s, 60) for s in range(8)]
    assert max(rea) <= 6.0 + 1e-9
    assert statistics.fmean(rea) > statistics.fmean(rnd) + 0.3, (rea, rnd)


def test_resume_with_a_new_sampler_sees_the_same_population(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = RegularizedEvolutionSampler(seed=1)
    study = optuna.create_study(direction="maximize", sampler=first, storage=url, study_name="s")
    study.optimize(toy, n_trials=25)
    before = [t.number for t in first.population(study)]
    again = RegularizedEvolutionSampler(seed=2)
    resumed = optuna.load_study(study_name="s", storage=url, sampler=again)
    assert [t.number for t in again.population(resumed)] == before
    resumed.optimize(toy, n_trials=1)
    last = resumed.trials[-1]
    assert last.system_attrs[PARENT_ATTR] in before
    assert CHILD_ATTR in last.system_attrs


def test_an_asked_child_keeps_its_assignment_across_processes(tmp_path):
    """Two concurrent asks get their own children, stored in the trials, so another sampler object draws the same
    parameters for them."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(direction="maximize", sampler=RegularizedEvolutionSampler(seed=3), storage=url,
                                study_name="s")
    study.optimize(toy, n_trials=12)
    a, b = study.ask(), study.ask()
    other = optuna.load_study(study_name="s", storage=url, sampler=RegularizedEvolutionSampler(seed=99))
    for asked in (a, b):
        frozen = other._storage.get_trial(asked._trial_id)
        assert CHILD_ATTR in frozen.system_attrs
        drawn_there = [other.sampler.sample_independent(other, frozen, n, DIST) for n in NAMES]
        assert drawn_there == [asked.suggest_categorical(n, OPS) for n in NAMES]


def test_multi_objective_parent_comes_from_the_best_front():
    sampler = RegularizedEvolutionSampler(population_size=4, sample_size=40, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    p = {n: "skip" for n in NAMES}
    for i, values in enumerate([(0.9, 5.0), (0.5, 6.0), (0.4, 1.0), (0.3, 2.0)]):  # #1 and #3 are dominated
        study.add_trial(finished(i, list(values), p, i))
    pop = sampler.population(study)
    assert {sampler.tournament(study, pop).number for _ in range(40)} == {0, 2}  # 40 draws: a front-0 member
    small = RegularizedEvolutionSampler(population_size=4, sample_size=1, seed=0)  # a tournament of one: anyone
    assert {small.tournament(study, pop).number for _ in range(60)} == {0, 1, 2, 3}
