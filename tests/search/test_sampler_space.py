"""What the samplers see of the search space: every trial suggests the same parameter names, each always with the
same distribution, so multivariate TPE models them jointly and never falls back to independent sampling."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
import pytest

from search import InvalidSample, SearchSpace, load_config, make_sampler

FULL = Path(__file__).resolve().parents[2] / "configs" / "full_space.yaml"
N = 200


def _run(sampler: optuna.samplers.BaseSampler, n: int = N) -> optuna.Study:
    """``n`` trials of the full space; the objective is cheap and depends on the architecture only."""
    space = SearchSpace(load_config(FULL).space, input_size=32)
    study = optuna.create_study(sampler=sampler, storage=optuna.storages.InMemoryStorage())
    for _ in range(n):
        trial = study.ask()
        try:
            arch = space.sample(trial)
        except InvalidSample:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, float(sum(s.depth * s.width for s in arch.stages)))
    return study


@pytest.fixture(autouse=True)
def quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_full_space_trials_use_one_fixed_set_of_names_each_with_one_distribution(name):
    study = _run(make_sampler(name, seed=0, n_trials=N))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 0.95 * N
    names = {frozenset(t.distributions) for t in done}
    assert len(names) == 1, f"{len(names)} different sets of parameter names"
    per_name: dict[str, set] = {}
    for t in study.trials:
        for key, dist in t.distributions.items():
            per_name.setdefault(key, set()).add(dist)
    assert set(per_name) == set(next(iter(names)))
    assert {k: len(v) for k, v in per_name.items() if len(v) != 1} == {}
    assert {"s0.block", "s2.depth", "norm", "order.basic"} <= set(per_name)


def _independent_warnings(caplog: pytest.LogCaptureFixture, run: callable) -> list[str]:
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.WARNING, logger="optuna"):
            run()
    finally:
        optuna.logging.disable_propagation()
    return [r.getMessage() for r in caplog.records if "independent" in r.getMessage()]


def test_multivariate_tpe_never_samples_the_full_space_independently(caplog):
    """Our TPE settings, with Optuna's independent-sampling warning switched on (off by default since Optuna 4.9),
    and a count of ``sample_independent`` calls once the model has taken over."""
    startup = make_sampler("tpe", seed=0, n_trials=N)._n_startup_trials
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the argument is deprecated, the warning still works
        sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=startup, multivariate=True,
                                             warn_independent_sampling=True)
    late = []
    plain = sampler.sample_independent

    def spy(study, trial, name, dist):
        if len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) >= startup:
            late.append((trial.number, name))
        return plain(study, trial, name, dist)

    sampler.sample_independent = spy
    assert _independent_warnings(caplog, lambda: _run(sampler)) == []
    assert late == []
    # the capture does see the warning of a space whose names change between trials
    caplog.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True,
                                             warn_independent_sampling=True)
    study = optuna.create_study(sampler=sampler)
    assert _independent_warnings(caplog, lambda: study.optimize(
        lambda t: t.suggest_categorical(f"x{t.number % 2}", [1, 2]), n_trials=6))
