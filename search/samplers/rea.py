"""Regularized (ageing) evolution as an Optuna sampler (Real et al., AAAI 2019, Algorithm 1).

REA keeps a population of the last ``population_size`` finished trials. Until that many trials are COMPLETE it
samples at random; then each new trial draws ``sample_size`` members at random (with replacement), takes the best as
its parent and copies the parent's parameters with exactly one of them changed to a different value. Ageing: the
population is the last ``population_size`` COMPLETE trials in the order they finished, so the oldest leaves, not
the worst. Defaults are the NAS-Bench-201 / NATS-Bench authors' released settings for the topology space
(D-X-Y/AutoDL-Projects, ``exps/NATS-algos/regularized_ea.py``: ``--ea_population 10 --ea_sample_size 3``; the
mutation picks one edge uniformly and switches its op to a different one), which do not scale with the budget.

Everything the sampler needs is in the storage, so it works after a resume and with concurrent trials: the
population is read from the study's COMPLETE trials, and the child a trial was assigned (parent number, mutated
parameter, every value in Optuna's internal representation) is stored as that trial's system attributes
(:data:`PARENT_ATTR`, :data:`MUTATED_ATTR`, :data:`CHILD_ATTR`) at ``study.ask()``, before any parameter is drawn.
A parameter the parent did not have (a dynamic space) is drawn at random.

Multi-objective studies: the tournament ranks the sampled members by their non-dominated front within the
population (Deb et al. 2002's sorting; front 0 is best; ties go to the member drawn first), as Syne Tune's
``MultiObjectiveRegularizedEvolution`` does by default, without its ε-net order inside a front. Constraint values
are not used: over-limit trials are PRUNED by the pipeline and never join the population.
"""
from __future__ import annotations

import math
import random
from typing import Any, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from . import SAMPLERS

PARENT_ATTR = "rea:parent"
MUTATED_ATTR = "rea:mutated"
CHILD_ATTR = "rea:child"
NB201_POPULATION = 10
NB201_SAMPLE_SIZE = 3


def front_ranks(values: Sequence[Sequence[float]], directions: Sequence[StudyDirection]) -> list[int]:
    """Non-dominated front index of each objective vector (0: not dominated by any other; Deb et al. 2002's sort,
    search/pareto.py), maximised objectives negated."""
    from ..pareto import non_dominated_sort

    signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
    return [int(r) for r in non_dominated_sort([[s * v for s, v in zip(signs, vec)] for vec in values])]


def _n_values(dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        return len(dist.choices)
    if isinstance(dist, IntDistribution):
        return (dist.high - dist.low) // dist.step + 1
    if isinstance(dist, FloatDistribution):
        return math.inf if dist.high > dist.low else 1
    raise ValueError(f"search.sampler: rea cannot mutate a {type(dist).__name__}; valid: categorical, int, float")


class RegularizedEvolutionSampler(optuna.samplers.BaseSampler):
    """Ageing evolution with tournament selection and one-parameter mutation; see the module docstring."""

    def __init__(self, *, population_size: int = NB201_POPULATION, sample_size: int = NB201_SAMPLE_SIZE,
                 seed: int | None = None) -> None:
        if population_size < 1:
            raise ValueError(f"population_size: must be >= 1, got {population_size}")
        if not 1 <= sample_size:
            raise ValueError(f"sample_size: must be >= 1, got {sample_size}")
        self.population_size, self.sample_size = population_size, sample_size
        self._rng = random.Random(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def population(self, study: Study) -> list[FrozenTrial]:
        """The last ``population_size`` COMPLETE trials of ``study``, oldest first (by finish time, then number)."""
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        done = sorted(done, key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
        return done[-self.population_size:]

    def tournament(self, study: Study, population: list[FrozenTrial]) -> FrozenTrial:
        """The best of ``sample_size`` members drawn with replacement (first drawn wins a tie)."""
        drawn = [self._rng.randrange(len(population)) for _ in range(self.sample_size)]
        if len(study.directions) == 1:
            sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
            key = {i: -sign * population[i].values[0] for i in drawn}
        else:
            ranks = front_ranks([t.values for t in population], study.directions)
            key = {i: ranks[i] for i in drawn}
        return population[min(drawn, key=lambda i: key[i])]  # min keeps the first of equal keys

    def mutate(self, parent: FrozenTrial) -> tuple[str | None, dict[str, float]]:
        """(mutated name, child params in internal representation): one parameter changed to a different value."""
        child = {n: d.to_internal_repr(parent.params[n]) for n, d in parent.distributions.items()}
        mutable = sorted(n for n, d in parent.distributions.items() if _n_values(d) > 1)
        if not mutable:
            return None, child
        name = self._rng.choice(mutable)
        dist, old = parent.distributions[name], child[name]
        if isinstance(dist, CategoricalDistribution):
            child[name] = float(self._rng.choice([i for i in range(len(dist.choices)) if i != int(old)]))
        elif isinstance(dist, IntDistribution):
            values = range(dist.low, dist.high + 1, dist.step)
            child[name] = float(self._rng.choice([v for v in values if v != int(old)]))
        else:
            lo, hi = (math.log(dist.low), math.log(dist.high)) if dist.log else (dist.low, dist.high)
            new = old
            for _ in range(100):
                new = self._rng.uniform(lo, hi)
                new = math.exp(new) if dist.log else new
                if dist.step is not None:
                    new = dist.low + round((new - dist.low) / dist.step) * dist.step
                if new != old:
                    break
            child[name] = float(min(max(new, dist.low), dist.high))
        return name, child

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if CHILD_ATTR in trial.system_attrs:
            return
        population = self.population(study)
        if len(population) < self.population_size:
            return
        parent = self.tournament(study, population)
        name, child = self.mutate(parent)
        for key, value in ((PARENT_ATTR, parent.number), (MUTATED_ATTR, name), (CHILD_ATTR, child)):
            study._storage.set_trial_system_attr(trial._trial_id, key, value)
            trial.system_attrs[key] = value

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        child = trial.system_attrs.get(CHILD_ATTR)
        if child is not None and param_name in child and param_distribution._contains(child[param_name]):
            return param_distribution.to_external_repr(child[param_name])
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def rea_sampler(*, seed: int, n_trials: int) -> RegularizedEvolutionSampler:
    """REA with the NAS-Bench-201 authors' population (10) and tournament (3); the budget does not change them."""
    return RegularizedEvolutionSampler(seed=seed)


SAMPLERS.register("rea", rea_sampler)
