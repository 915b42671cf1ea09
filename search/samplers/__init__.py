"""The Optuna samplers a config can name (``search.sampler``), as a registry of seeded factories.

Each factory is ``(*, seed, n_trials) -> optuna.samplers.BaseSampler``: ``n_trials`` is the search's
budget, which sizes TPE's random start-up and NSGA-II's population. A new sampler is one module in this
folder (imported automatically) with one ``SAMPLERS.register(name, factory)`` line; the config, the
benches and the tests take their names from here.
"""
from __future__ import annotations

from typing import Callable

import optuna

from space._autoload import import_submodules
from space.registry import Registry

SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")
DEFAULT_SAMPLER = "tpe"


def make_sampler(name: str, *, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The registered sampler ``name``, seeded, sized for a search of ``n_trials`` trials."""
    return SAMPLERS.get(name)(seed=seed, n_trials=n_trials)


import_submodules(__name__, __path__)
