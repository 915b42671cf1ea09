"""Optuna's own samplers with the settings a NAS budget wants: TPE (the default), NSGA-II, random, GP."""
from __future__ import annotations

import threading
from typing import Any

import optuna

from . import SAMPLERS


def tpe_sampler(*, seed: int, n_trials: int) -> optuna.samplers.TPESampler:
    """Multivariate TPE (Bergstra et al. 2011; Falkner et al. 2018); about a third of the budget (3–10
    trials) is sampled at random before the model takes over. With the constant liar, trials still running count
    as bad results, so concurrent trials are not all proposed near the same point (no effect on a sequential
    search). Every sample suggests the same parameters (search/space_def.py), so nothing is sampled independently;
    Optuna's warning for that (off by default since Optuna 4.9) is left at its default."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(3, min(10, n_trials // 3)),
                                      multivariate=True, constant_liar=True)


class PicklableNSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, picklable: Optuna 5.1's genetic-algorithm base holds a ``threading.Lock`` (guarding its
    generation cache) and defines no ``__getstate__``, so Ray Tune, which pickles the searcher and its sampler when
    the Tuner is made, failed every ``search.sampler: nsga2`` run before its first trial. The copy gets a new lock;
    everything else (random state, generation cache) is pickled as it is."""

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_thread_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def nsga2_sampler(*, seed: int, n_trials: int) -> optuna.samplers.NSGAIISampler:
    """NSGA-II (Deb et al. 2002) with a population of a third of the budget, 4 to 50."""
    return PicklableNSGAIISampler(seed=seed, population_size=max(4, min(50, n_trials // 3)))


def random_sampler(*, seed: int, n_trials: int) -> optuna.samplers.RandomSampler:
    """Uniform random search; the budget does not change what it samples."""
    return optuna.samplers.RandomSampler(seed=seed)


def gp_sampler(*, seed: int, n_trials: int) -> optuna.samplers.GPSampler:
    """Optuna's Gaussian-process sampler with its own defaults (10 random start-up trials; log EI, or log EHVI
    for several objectives); its categorical kernel handles the architecture choices. The budget does not change
    it."""
    return optuna.samplers.GPSampler(seed=seed)


SAMPLERS.register("tpe", tpe_sampler)
SAMPLERS.register("nsga2", nsga2_sampler)
SAMPLERS.register("random", random_sampler)
SAMPLERS.register("gp", gp_sampler)
