"""Multi-objective early stopping: MO-ASHA as a Ray Tune scheduler.

Multi-objective asynchronous successive halving (Schmucker, Donini, Zafar, Salinas & Archambeau 2021,
"Multi-objective Asynchronous Successive Halving", arXiv:2106.12639). Rungs sit at ``r_min·η^k``
epochs below ``max_t``. A trial reaching a rung is recorded there with its objective vector *at that
rung* (accuracy after ``r_min·η^k`` epochs, its MACs/FLOPs/params/latency), and the ``n`` trials
recorded at the rung so far are ranked by non-dominated sorting (Deb et al. 2002, NSGA-II §III-A)
and, inside a front, by hypervolume contribution: greedy hypervolume subset selection over the
objectives min–max normalised across the rung, reference point 1.1 on every axis (:func:`rank_order`;
the Pareto math is search/pareto.py's).
The arriving trial continues iff its position ``p`` (0-based) satisfies ``p < n/η`` — the best
``⌈n/η⌉`` go on, the rest stop. With ``n < η`` (fewer than η trials recorded, the arriving one
included) it continues: ASHA's rule for a rung too few trials have reached yet (Li et al. 2020).

The paper ranks by non-dominated sorting with NSGA-II's crowding distance inside a front, or by an
ε-net. This keeps the non-dominated sorting and breaks ties inside a front by hypervolume
contribution instead (as SMS-EMOA, Beume, Naujoks & Emmerich 2007): crowding distance gives ∞ to the
extreme point of every objective, so in the small fronts of an asynchronous rung (any front of ≤ 3
points in 2-D or 3-D) all points tie and arrival order decides; hypervolume contribution ranks any
front and prefers the points that widen it most.

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

from ..pareto import greedy_hypervolume_order, non_dominated_sort, normalise, reference_point
from . import SCHEDULERS, TIME_ATTR, is_intermediate


def rank_order(losses: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Row indices of ``losses`` (n × m, minimise all) best first; the first ``limit`` (all when None).

    Front by front (non-dominated sorting); inside a front, greedy hypervolume-contribution order on the
    objectives min–max normalised over all finite rows, reference point 1.1 on every axis. Rows with a
    non-finite objective (a diverged accuracy) come last, in row order.
    """
    losses = np.asarray(losses, dtype=float)
    n = len(losses)
    limit = n if limit is None else min(limit, n)
    finite = np.flatnonzero(np.all(np.isfinite(losses), axis=1))
    out: list[int] = []
    if len(finite):
        sub = losses[finite]
        norm = normalise(sub)
        reference = reference_point(sub.shape[1])
        fronts = non_dominated_sort(sub)
        for f in range(int(fronts.max()) + 1):
            if len(out) >= limit:
                break
            members = np.flatnonzero(fronts == f)
            order = greedy_hypervolume_order(norm[members], reference, limit - len(out))
            out.extend(int(finite[members[i]]) for i in order)
    out.extend(i for i in range(n) if i not in set(finite.tolist()))
    return np.array(out[:limit], dtype=int)


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
    directions); ``max_t``: the proxy epochs; rungs at ``grace_period·reduction_factor^k < max_t``.
    """

    _supports_buffered_results = False  # decide right after the rung epoch, not after a buffer of them

    def __init__(self, *, objectives: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int = 1,
                 reduction_factor: float = 3, time_attr: str = TIME_ATTR) -> None:
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
        self.objectives = list(objectives)
        self.signs = np.array([-1.0 if m == "max" else 1.0 for m in modes])
        self.max_t = max_t
        self.reduction_factor = float(reduction_factor)
        self.time_attr = time_attr
        self.milestones = rung_milestones(grace_period, reduction_factor, max_t)
        self.rungs: list[dict[str, np.ndarray]] = [{} for _ in self.milestones]  # trial_id -> loss vector
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
        rung = None
        for k in reversed(range(len(self.milestones))):
            if t >= self.milestones[k]:
                rung = None if trial_id in self.rungs[k] else self.rungs[k]
                break
        if rung is None:
            return TrialScheduler.CONTINUE
        loss = self.signs * np.asarray(values, dtype=float)
        rung[trial_id] = np.where(np.isnan(loss), math.inf, loss)  # a NaN objective ranks worst
        n = len(rung)
        if n < self.reduction_factor:
            return TrialScheduler.CONTINUE
        ids = list(rung)
        keep = math.ceil(n / self.reduction_factor)  # p < n/η  ⟺  p < ⌈n/η⌉
        top = rank_order(np.stack([rung[i] for i in ids]), limit=keep)
        return TrialScheduler.CONTINUE if ids.index(trial_id) in top.tolist() else TrialScheduler.STOP

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        pass  # the final report carries no rung value; every rung the trial passed is recorded already

    def debug_string(self) -> str:
        rungs = ", ".join(f"epoch {m:g}: {len(r)}" for m, r in zip(self.milestones, self.rungs))
        return f"Using MO-ASHA (η={self.reduction_factor:g}): {self.num_stopped} stopped; recorded per rung: {rungs}"

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
                           reduction_factor=options["reduction_factor"])


def _needs_a_rung(options: dict[str, Any], *, max_t: int) -> str | None:
    if max_t <= options["grace_period"]:
        return (f"grace_period: mo_asha needs proxy.epochs > grace_period, got proxy.epochs {max_t} and "
                f"grace_period {options['grace_period']}; lower grace_period or raise proxy.epochs")
    return None


SCHEDULERS.register("mo_asha", _mo_asha, options={
    "grace_period": OptionSpec(int, 1, "epochs before the first rung (r_min)", lambda v: v >= 1, ">= 1"),
    "reduction_factor": OptionSpec(float, 3.0, "η: the best 1/η of a rung continue", lambda v: v > 1, "> 1")},
    check=_needs_a_rung,
    doc="Multi-objective ASHA (Schmucker et al. 2021), rungs at grace_period·reduction_factor^k epochs")
