"""Multi-objective early stopping: MO-ASHA as a Ray Tune scheduler.

Multi-objective asynchronous successive halving (Schmucker, Donini, Zafar, Salinas & Archambeau 2021,
"Multi-objective Asynchronous Successive Halving", arXiv:2106.12639), with the decision rule of its
reference implementation, Syne Tune's ``MOASHA``. Rungs sit at ``r_min·η^k`` epochs below ``max_t``. A
trial reaching a rung is recorded there with its objective vector *at that rung* (accuracy after
``r_min·η^k`` epochs, its MACs/FLOPs/params/latency), and the ``n`` results recorded at the rung so far,
the arriving one included, are ranked: front by front (non-dominated sorting), inside a front by the
``ranking`` option (search/schedulers/mo_rank.py: ``epsnet``, the reference's default, ``crowding`` or
``hypervolume``). With ``b`` the number of results ranked strictly before the arriving one (equal
objective vectors share a place), the trial stops iff ``b/n > 1/η``: the first result at a rung always
continues, with ``n = kη`` the best ``k + 1`` places continue, and with fewer than η results one that
ranks behind any other stops. With a single objective this is ASHA's rule (Li et al. 2020; Ray Tune's
``AsyncHyperBandScheduler`` cuts instead at the interpolated ``1 − 1/η`` quantile of the earlier results).

Deliberate differences from Syne Tune (``NonDominatedPriority`` + ``Bracket.on_result``):

- there, the ε-net and the non-dominated sort hand back orders (row indices, best first) where ranks are
  read, so the decision depends on which row happens to rank last, not on the arriving row's place;
  here ``b`` is the arriving row's place in the order, as the paper describes;
- the ε-net measures distances on the objectives min–max normalised over the rung's finite results
  (there: raw values, where MACs in millions would decide alone);
- equal objective vectors share a place (there, a duplicate is at distance 0 and comes last in its front),
  every in-front tie goes to the earlier-recorded result, and a result with a non-finite objective (a
  diverged accuracy) ranks after every finite one;
- a trial already recorded at the highest rung its epoch has reached is not recorded at a lower one (as
  Ray Tune's ASHA; with a report after every epoch both see every rung in order).

No rung sits at ``max_t``: a trial that has paid for all its epochs is never stopped (its final
report is the real result). The trainable must report ``epoch`` (= epochs completed) after every
epoch and a final result without it (search/run.py ``_trainable`` + ArchEvaluation do); see
:func:`search.schedulers.is_intermediate`.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from space.registry import OptionSpec

from . import SCHEDULERS, TIME_ATTR, is_intermediate
from .mo_rank import RANKINGS, RungFronts


def rung_milestones(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """``grace_period·η^k`` for k = 0, 1, … strictly below ``max_t`` (ascending)."""
    out, r = [], float(grace_period)
    while r < max_t:
        out.append(r)
        r *= reduction_factor
    return out


class MOASHAScheduler(FIFOScheduler):
    """Multi-objective ASHA (see the module docstring): CONTINUE or STOP at each rung.

    ``objectives``/``modes``: result keys and ``"max"``/``"min"`` (the config's objectives and
    directions); ``max_t``: the proxy epochs; rungs at ``grace_period·reduction_factor^k < max_t``;
    ``ranking``: the order inside a front, one of search/schedulers/mo_rank.py's ``RANKINGS``.
    """

    _supports_buffered_results = False  # decide right after the rung epoch, not after a buffer of them

    def __init__(self, *, objectives: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, ranking: str = "epsnet", time_attr: str = TIME_ATTR) -> None:
        super().__init__()
        if not objectives:
            raise ValueError("objectives: give at least one objective")
        if len(modes) != len(objectives) or any(m not in ("min", "max") for m in modes):
            raise ValueError(f"modes: need one of 'min'/'max' per objective, got {list(modes)} for {list(objectives)}")
        if grace_period < 1:
            raise ValueError(f"grace_period: must be >= 1, got {grace_period}")
        if not reduction_factor > 1:
            raise ValueError(f"reduction_factor: must be > 1, got {reduction_factor}")
        if max_t <= grace_period:
            raise ValueError(f"max_t: must be > grace_period ({grace_period}), got {max_t}")
        if ranking not in RANKINGS:
            raise ValueError(f"ranking: must be one of {', '.join(RANKINGS)}, got {ranking!r}")
        self.objectives = list(objectives)
        self.signs = np.array([-1.0 if m == "max" else 1.0 for m in modes])
        self.max_t = max_t
        self.reduction_factor = float(reduction_factor)
        self.time_attr = time_attr
        self.milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self.ranking = ranking
        self.rungs: list[dict[str, np.ndarray]] = [{} for _ in self.milestones]  # trial_id -> loss vector
        self.fronts = [RungFronts(len(self.objectives)) for _ in self.milestones]  # the same rows, ranked
        self.num_stopped = 0

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Objectives come from the constructor; a single TuneConfig metric would be wrong here."""
        return metric is None and mode is None

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        if not is_intermediate(result) or any(result.get(o) is None for o in self.objectives):
            return TrialScheduler.CONTINUE
        values = [float(result[o]) for o in self.objectives]
        action = self.decide(trial.trial_id, float(result[self.time_attr]), values)
        if action == TrialScheduler.STOP:
            self.num_stopped += 1
        return action

    def decide(self, trial_id: str, t: float, values: Sequence[float]) -> str:
        """Record ``values`` (objective order, raw directions) at the highest rung ``t`` has reached and
        not yet recorded for this trial; CONTINUE or STOP by the rule in the module docstring."""
        reached = [k for k, m in enumerate(self.milestones) if t >= m]
        if not reached or trial_id in self.rungs[reached[-1]]:
            return TrialScheduler.CONTINUE
        k = reached[-1]
        loss = self.signs * np.asarray(values, dtype=float)
        self.rungs[k][trial_id] = loss = np.where(np.isnan(loss), math.inf, loss)  # a NaN objective ranks worst
        row = self.fronts[k].add(loss)
        keep = self.fronts[k].continues(row, self.ranking, self.reduction_factor)
        return TrialScheduler.CONTINUE if keep else TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        pass  # the final report carries no rung value; every rung the trial passed is recorded already

    def debug_string(self) -> str:
        rungs = ", ".join(f"epoch {m:g}: {len(r)}" for m, r in zip(self.milestones, self.rungs))
        return (f"Using MO-ASHA (η={self.reduction_factor:g}, {self.ranking}): {self.num_stopped} stopped; "
                f"recorded per rung: {rungs}")

    def replay(self, arrivals: Iterable[tuple[str, float, Sequence[float]]]) -> None:
        """Rebuild the rungs on resume: :meth:`decide` each stored ``(key, epoch, objective vector)`` report of
        the earlier runs in arrival order (search/searcher.py ``epoch_arrivals``), so later arrivals meet the
        rungs an uninterrupted run would have had."""
        for key, t, values in arrivals:
            if self.decide(key, t, values) == TrialScheduler.STOP:
                self.num_stopped += 1


def _mo_asha(options: dict[str, Any], *, objectives: Sequence[str], modes: Sequence[str],
             max_t: int) -> MOASHAScheduler:
    return MOASHAScheduler(objectives=objectives, modes=modes, max_t=max_t, grace_period=options["grace_period"],
                           reduction_factor=options["reduction_factor"], ranking=options["ranking"])


def _needs_a_rung(options: dict[str, Any], *, max_t: int) -> str | None:
    if max_t <= options["grace_period"]:
        return (f"grace_period: mo_asha needs proxy.epochs > grace_period, got proxy.epochs {max_t} and "
                f"grace_period {options['grace_period']}; lower grace_period or raise proxy.epochs")
    return None


SCHEDULERS.register("mo_asha", _mo_asha, options={
    "grace_period": OptionSpec(int, 1, "epochs before the first rung (r_min)", lambda v: v >= 1, ">= 1"),
    "reduction_factor": OptionSpec(float, 3.0, "η: the best 1/η of a rung continue", lambda v: v > 1, "> 1"),
    "ranking": OptionSpec(str, "epsnet", "order inside a front: ε-net, crowding distance or hypervolume",
                          lambda v: v in RANKINGS, f"one of {', '.join(RANKINGS)}")},
    check=_needs_a_rung,
    doc="Multi-objective ASHA (Schmucker et al. 2021), rungs at grace_period·reduction_factor^k epochs")
