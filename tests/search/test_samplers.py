"""The sampler registry: every registered name is a config choice, builds a seeded sampler that repeats its
proposals, and the built-in ones keep their settings (TPE's start-up and NSGA-II's population follow the budget)."""
from __future__ import annotations

import optuna
import pytest

from search import SAMPLERS, ConfigError, make_sampler, parse_config


def proposals(sampler: optuna.samplers.BaseSampler, n: int) -> list[dict]:
    """Parameters ``sampler`` proposes on a small two-objective problem over ``n`` trials."""
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        k = trial.suggest_categorical("k", [1, 2, 4, 8])
        return x * k, x + k

    study.optimize(objective, n_trials=n)
    return [t.params for t in study.trials]


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_registered_sampler_is_a_seeded_config_choice(name):
    cfg = parse_config({"search": {"sampler": name.upper(), "n_trials": 12, "seed": 3}})
    assert cfg.search.sampler == name
    sampler = make_sampler(cfg.search.sampler, seed=cfg.search.seed, n_trials=cfg.search.n_trials)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    again = make_sampler(name, seed=3, n_trials=12)
    assert proposals(sampler, 12) == proposals(again, 12)


def test_unknown_sampler_names_every_registered_one():
    with pytest.raises(ConfigError) as info:
        parse_config({"search": {"sampler": "annealing"}})
    msg = str(info.value)
    assert msg.startswith("search.sampler: must be one of ") and msg.endswith("got 'annealing'"), msg
    assert all(name in msg for name in ("tpe", "nsga2", "random", "rea", "gp"))
    with pytest.raises(ValueError, match="unknown sampler 'annealing'; valid: gp, nsga2, random, rea, tpe"):
        make_sampler("annealing", seed=0, n_trials=4)


@pytest.mark.parametrize("n_trials, startup", [(6, 3), (21, 7), (30, 10), (300, 10)])
def test_tpe_starts_with_a_third_of_the_budget_at_random(n_trials, startup):
    """Same proposals as a multivariate TPE configured by hand with that many start-up trials."""
    ours = make_sampler("tpe", seed=5, n_trials=n_trials)
    by_hand = optuna.samplers.TPESampler(seed=5, n_startup_trials=startup, multivariate=True)
    assert proposals(ours, startup + 3) == proposals(by_hand, startup + 3)


@pytest.mark.parametrize("n_trials, population", [(6, 4), (30, 10), (300, 50)])
def test_nsga2_population_is_a_third_of_the_budget(n_trials, population):
    ours = make_sampler("nsga2", seed=5, n_trials=n_trials)
    assert ours.population_size == population
    by_hand = optuna.samplers.NSGAIISampler(seed=5, population_size=population)
    assert proposals(ours, 2 * population + 2) == proposals(by_hand, 2 * population + 2)


def test_random_ignores_the_budget():
    assert proposals(make_sampler("random", seed=2, n_trials=4), 6) == \
        proposals(make_sampler("random", seed=2, n_trials=400), 6) == \
        proposals(optuna.samplers.RandomSampler(seed=2), 6)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_registered_sampler_survives_pickling_as_ray_tune_does_it(name):
    """Ray Tune pickles the searcher, sampler included, when the Tuner is made (and on every checkpoint); Optuna
    5.1's NSGA-II holds a thread lock that cannot be pickled, which made every `search.sampler: nsga2` run fail
    before its first trial. The copy must propose what the original proposes, after a few trials too."""
    from ray import cloudpickle

    fresh = cloudpickle.loads(cloudpickle.dumps(make_sampler(name, seed=4, n_trials=12)))
    assert proposals(fresh, 12) == proposals(make_sampler(name, seed=4, n_trials=12), 12)
    used = make_sampler(name, seed=4, n_trials=12)
    proposals(used, 6)
    cloudpickle.loads(cloudpickle.dumps(used))
