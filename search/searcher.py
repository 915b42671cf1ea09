"""Ray Tune's ``OptunaSearch``, recording what a trial measured and why it failed in the Optuna storage.

Ray's searcher tells Optuna only the objective values. Ours also stores, as trial user attributes,
the architecture (``arch_id``, ``arch_yaml``, set at sampling time so failed trials keep them), every
metric of the table the trial computed (params, flops, macs, latency, losses, epochs, seconds...), where
and how it ran and, for a failed trial, its reason.
A trial whose result carries ``trial_error`` or a non-finite objective is told as FAIL. A trial whose
last result is a per-epoch report (a scheduler stopped it early: search/schedulers/) is told as PRUNED,
never COMPLETE, with ``pruned_at_epoch`` and its values at that epoch as user attributes.

**Duplicates.** Before handing Ray a trial, the searcher checks its architecture (``arch_id``) against the stored
trials. One already evaluated (a finished trial, not interrupted, not itself a duplicate) is answered from that
trial: the new trial (its ``arch_id`` and ``cached_from``, the source's number) is told at once with the source's
state, values, constraint values, recorded metrics, intermediate values if PRUNED and reason if not COMPLETE, so
the sampler learns from the re-proposal, and the searcher samples again. One in flight (a
RUNNING trial of any driver) is told FAIL with ``cached_from`` and the reason. Neither reaches Ray or counts against
``search.n_trials`` (search/run.py's ``budget_used``). The space counts as exhausted when the distinct architectures
evaluated or running reach its size (``SearchSpace.size()``, exact or an upper bound), or after
:data:`MAX_RESAMPLES` re-proposals in a row: :attr:`NasOptunaSearch.exhausted` then holds the line saying so and the
searcher reports ``FINISHED`` to Ray, which ends the search once the running trials end.

**Constraints.** With ``limits`` (the config's hard ``constraints:``), every trial whose result carries the
limited metrics stores their constraint values, ``value - bound`` for a ``max_`` limit and ``bound - value`` for a
``min_`` one (``<= 0``: feasible), as the list under Optuna's system attribute ``constraints`` in ``limits`` order
(the route of Optuna's ``constraints_func``; TPE and NSGA-II read it as ``FrozenTrial.constraints``,
optuna-dashboard shows it). A trial over a limit (its result carries ``over_limit``, the violation) is told PRUNED
with ``over_limit`` as user attribute: it was stopped before training, TPE ranks it below every feasible trial,
and it never reaches the Pareto front. NSGA-II selects its parents among COMPLETE trials only, so it sees the
constraint values of the feasible ones but not the PRUNED over-limit trials.

**Screening** (proxy-guided search, ``search.screen: {metric, candidates}``). With a ``screen`` (search/evaluation.py's
:class:`~search.evaluation.Screen`), the searcher collects up to ``candidates`` new proposals per trial it hands Ray
(each re-proposal is answered as above and does not count as a candidate), scores each in the driver with the cheap
metric and hands Ray the best by the metric's direction (ties: the earliest). Every other candidate is told at once
as PRUNED with the user attributes ``screened_out`` (one line: ``synflow 1.2e+03 < 4.5e+03 of trial 17 (best of
4)``) and its metric value under the metric's name; the chosen trial records its metric value and ``screen_seconds``,
the driver's seconds spent scoring its candidates. A candidate that cannot be scored (an invalid sample, told FAIL
with its reason, or an architecture the metric raised on) ranks last. Screened-out trials never reach Ray and do not
count against ``search.n_trials``; a later re-proposal of one is answered from it like any other duplicate.
What the samplers learn from them: TPE ranks PRUNED trials below COMPLETE ones, so screened-out proposals teach it
to avoid low-proxy regions (they also count towards its random start-up trials); NSGA-II, GP and REA read COMPLETE
trials only, and random search ignores every trial. Candidates are RUNNING only inside :meth:`suggest`, owned by the
driver like every trial it samples, so a Ctrl-C while scoring leaves them to :func:`search.run.close_interrupted`.

Every per-epoch report is stored as it arrives: the first objective as the trial's Optuna intermediate value
at step ``epoch`` (optuna-dashboard draws them as learning curves), and every objective, with the arrival
time, appended to the user attribute :data:`EPOCH_ATTR`, from which :func:`epoch_arrivals` rebuilds a
scheduler's rungs on resume.
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from evaluators import get_metric, list_metrics
from space import from_yaml

from .schedulers import is_intermediate
from .storage import set_user_attrs, tell

if TYPE_CHECKING:
    from .evaluation import Screen

RUN_ATTRS = ("eval_seconds", "batch_size", "oom_retries", "node", "threads", "latency_device", "latency_protocol",
             "latency_ratio", "latency_reference_ms", "latency_ci_ms")
"""Recorded besides the metrics: how long the pre-training evaluators took, the batch actually trained
(after an out-of-memory retry), where it ran and with how many threads, the device ``latency_ms`` was
measured on (``cpu``, ``ort-cpu``, ...) and how (``plain``/``interleaved``; interleaved: the ratio to the
reference network, the reference's calibrated latency and the half-width of the 95% interval, in ms)."""


def recorded() -> list[str]:
    """The result keys stored as user attributes: ``arch_id``, every metric of the table, :data:`RUN_ATTRS`."""
    return ["arch_id", *list_metrics(), *RUN_ATTRS]


EPOCH_ATTR = "epoch_objectives"
"""User attribute: the trial's per-epoch reports, ``[{"epoch": e, "at": unix time, "values": {objective: v}}]``."""

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

MAX_RESAMPLES = 100
"""Re-proposed architectures in a row after which the searcher takes the space as exhausted and stops."""

Limit = tuple[str, str, float]
"""``(metric, direction, bound)`` of a hard limit: a "min" metric is bounded above, a "max" one below."""


def constraint_values(result: dict, limits: Sequence[Limit]) -> list[float] | None:
    """``value - bound`` (``bound - value`` for a "max" metric) of every limit, or None if a value is missing."""
    values = [result.get(metric) for metric, _, _ in limits]
    if not limits or any(v is None for v in values):
        return None
    return [float(v) - bound if direction == "min" else bound - float(v)
            for v, (_, direction, bound) in zip(values, limits)]


def evaluated(trial: FrozenTrial) -> bool:
    """A finished trial that evaluated its architecture: not interrupted and not answered from another trial."""
    return trial.state in FINISHED and "arch_id" in trial.user_attrs and not trial.user_attrs.get("interrupted") \
        and "cached_from" not in trial.user_attrs


def _source_rank(t: FrozenTrial) -> tuple[int, int]:
    return (0 if t.state == TrialState.COMPLETE else 1 if t.state == TrialState.PRUNED else 2, t.number)


def epoch_arrivals(trials: Iterable[FrozenTrial], objectives: Sequence[str]) -> list[tuple[str, float, list[float]]]:
    """``(key, epoch, objective vector)`` of every per-epoch report of the finished, not interrupted ``trials``,
    in the order they arrived; ``key`` is ``"stored-<number>"``. An interrupted trial is left out: its
    architecture is re-queued and its re-run reports again."""
    rows = []
    for t in trials:
        if t.state not in FINISHED or t.user_attrs.get("interrupted"):
            continue
        for r in t.user_attrs.get(EPOCH_ATTR, []):
            if all(o in r["values"] for o in objectives):
                rows.append((r["at"], t.number, float(r["epoch"]), [float(r["values"][o]) for o in objectives]))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [(f"stored-{number}", epoch, values) for _, number, epoch, values in rows]


class NasOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` that never hands Ray an architecture already evaluated or running, stores per-epoch
    reports and constraint values, and records why a trial failed (module docstring).

    ``limits``: the hard limits whose constraint values are stored (:data:`Limit`, the config's order).
    ``screen``: proxy-guided search (module docstring; None: every new proposal goes to Ray)."""

    def __init__(self, *args: Any, limits: Sequence[Limit] = (), screen: Screen | None = None, **kwargs: Any) -> None:
        self.limits = list(limits)
        self.screen = screen
        self.exhausted: str | None = None
        self.duplicates = self.screened = 0
        self._index: dict[str, list[int]] | None = None
        super().__init__(*args, **kwargs)

    def suggest(self, trial_id: str) -> dict | str | None:
        """A new architecture's config, re-sampling re-proposed ones (recorded, not run) and, with a ``screen``,
        the best of its candidates; ``FINISHED`` once :data:`MAX_RESAMPLES` proposals in a row were duplicates."""
        if self.exhausted is not None:
            return Searcher.FINISHED
        if trial_id in self._ot_trials or not callable(self._space):
            return super().suggest(trial_id)
        index = self._arch_index()
        if self._space_full(index):
            return Searcher.FINISHED
        storage = self._ot_study._storage  # Optuna has no public API to read one trial by id
        want = self.screen.candidates if self.screen is not None else 1
        picked: list[tuple[Any, dict]] = []
        misses = 0
        while len(picked) < want and not (picked and self._space_full(index)):
            if misses == MAX_RESAMPLES:
                self.exhausted = (f"search space exhausted: the last {MAX_RESAMPLES} proposals were architectures "
                                  f"already evaluated or running; stopping with {len(self._taken())} distinct "
                                  f"architecture(s)")
                break
            ot_trial = self._ot_study.ask()
            config = self._suggest_from_define_by_run_func(self._space, ot_trial)
            arch_id = ot_trial.user_attrs.get("arch_id")
            same = [t for t in map(storage.get_trial, index.get(arch_id, []))
                    if evaluated(t) or t.state == TrialState.RUNNING]
            if arch_id is not None:
                index.setdefault(arch_id, []).append(ot_trial._trial_id)
            if not same:
                picked.append((ot_trial, config))
                misses = 0
                continue
            self._answer_from(ot_trial, min(same, key=_source_rank))
            self.duplicates += 1
            misses += 1
        if not picked:
            return Searcher.FINISHED
        ot_trial, config = picked[self._screen(picked)] if self.screen is not None else picked[0]
        self._ot_trials[trial_id] = ot_trial
        return config

    def _space_full(self, index: dict[str, list[int]]) -> bool:
        """Every architecture of the space is evaluated or running; :attr:`exhausted` then says so."""
        size = getattr(getattr(self._space, "space", None), "size", None)
        if size is None or len(index) < size() or len(self._taken()) < size():  # taken ⊆ index's keys
            return False
        self.exhausted = f"search space exhausted: all {size():,} architectures evaluated or running"
        return True

    def _screen(self, picked: list[tuple[Any, dict]]) -> int:
        """Score the candidates ``picked`` (``(Optuna trial, config)``, in sampling order) with the screen, tell
        all but the best (module docstring) and return the best's position."""
        screen = self.screen
        metric = screen.metric
        sign = 1.0 if get_metric(metric).direction == "max" else -1.0
        t0 = time.perf_counter()
        scores: list[float | None] = []
        why: list[str] = []
        for _, config in picked:
            value, problem = None, "an invalid sample"
            if "invalid" not in config:
                try:
                    value = float(screen(from_yaml(config["arch_yaml"])))
                    problem = "not a number"
                except Exception as exc:  # recorded on the candidate; the search goes on
                    problem = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            scores.append(value if value is not None and not math.isnan(value) else None)
            why.append(problem)
        seconds = time.perf_counter() - t0
        scored = [i for i, v in enumerate(scores) if v is not None]
        best = max(scored, key=lambda i: (sign * scores[i], -i)) if scored else 0
        top, n = picked[best][0], len(picked)
        for i, (ot_trial, config) in enumerate(picked):
            value = scores[i]
            attrs: dict[str, Any] = {} if value is None else {metric: value}
            if i == best:
                set_user_attrs(ot_trial, {**attrs, "screen_seconds": seconds})
                continue
            if value is not None:
                rel = "=" if value == scores[best] else "<" if sign * value < sign * scores[best] else ">"
                attrs["screened_out"] = f"{metric} {value:.3g} {rel} {scores[best]:.3g} of trial {top.number} " \
                                        f"(best of {n})"
            elif scores[best] is not None:
                attrs["screened_out"] = f"{metric} not computed ({why[i]}); trial {top.number} scored " \
                                        f"{scores[best]:.3g} (best of {n})"
            else:
                attrs["screened_out"] = f"{metric} not computed ({why[i]}); no candidate of {n} was scored, the " \
                                        f"first (trial {top.number}) went on"
            set_user_attrs(ot_trial, attrs)
            tell(self._ot_study, ot_trial, None, state=TrialState.FAIL if "invalid" in config else TrialState.PRUNED)
            self.screened += 1
        return best

    def _arch_index(self) -> dict[str, list[int]]:
        """``arch_id`` → ids of the study's trials recorded with it: read once, then kept up to date by
        :meth:`suggest` (one driver per study, search/lease.py: no other process adds trials meanwhile), so a
        proposal is checked against the trials of its own architecture only, not against every stored trial."""
        if self._index is None:
            self._index = {}
            for t in self._ot_study.get_trials(deepcopy=False):
                if "arch_id" in t.user_attrs:
                    self._index.setdefault(t.user_attrs["arch_id"], []).append(t._trial_id)
        return self._index

    def _taken(self) -> set[str]:
        """The architectures evaluated or running."""
        return {t.user_attrs["arch_id"] for t in self._ot_study.get_trials(deepcopy=False)
                if evaluated(t) or (t.state == TrialState.RUNNING and "arch_id" in t.user_attrs)}

    def _answer_from(self, ot_trial: Any, src: FrozenTrial) -> None:
        """Record ``ot_trial`` (same architecture as ``src``) with ``src``'s outcome; a RUNNING ``src``: FAIL."""
        if src.state == TrialState.RUNNING:
            set_user_attrs(ot_trial, {"cached_from": src.number, "fail_reason": f"duplicate: same architecture as "
                                                                                 f"trial {src.number}, still running"})
            tell(self._ot_study, ot_trial, None, state=TrialState.FAIL)
            return
        attrs = {key: src.user_attrs[key] for key in (*recorded(), "fail_reason", "pruned_at_epoch", "over_limit",
                                                       "screened_out") if key in src.user_attrs and key != "arch_id"}
        system = {k: src.system_attrs[k] for k in (_CONSTRAINTS_KEY,) if k in src.system_attrs}
        set_user_attrs(ot_trial, {"cached_from": src.number, **attrs}, system)  # one transaction
        storage = self._ot_study._storage  # Optuna has no public API to copy these onto a trial
        if src.state == TrialState.PRUNED:  # TPE ranks pruned trials by their last intermediate value
            for step, value in src.intermediate_values.items():
                storage.set_trial_intermediate_value(ot_trial._trial_id, step, value)
        tell(self._ot_study, ot_trial, src.values if src.state == TrialState.COMPLETE else None, state=src.state)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Store a per-epoch report (see the module docstring); Ray's version skips multi-objective studies.

        Optuna's ``Trial.report`` refuses multi-objective studies, so the intermediate value goes to the storage
        through the trial's ``storage`` and ``_trial_id``, here only, in one transaction with the epoch's row."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or not is_intermediate(result) \
                or any(result.get(m) is None for m in metrics):
            return
        ot_trial = self._ot_trials[trial_id]
        epoch = int(result["epoch"])
        values = {m: float(result[m]) for m in metrics}
        at = max(time.time(), getattr(self, "_last_at", 0.0) + 1e-6)  # strictly increasing: arrival order
        self._last_at = at
        history = list(ot_trial.user_attrs.get(EPOCH_ATTR, []))
        # the intermediate value and the epoch's row in one transaction: the trial process waits for this
        # (Ray Tune's function trainables report synchronously)
        set_user_attrs(ot_trial, {EPOCH_ATTR: [*history, {"epoch": epoch, "at": at, "values": values}]},
                       intermediate=(epoch, values[metrics[0]]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        result = result or {}
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [result.get(m) for m in metrics]
        reason = result.get("trial_error")
        if reason is None and error:
            reason = "the trial process died or raised outside the evaluation (see error.txt in its Ray trial folder)"
        stopped = reason is None and (is_intermediate(result) or bool(result.get("over_limit")))
        if reason is None and not stopped and any(v is None or not math.isfinite(float(v)) for v in values):
            reason = f"missing or non-finite objective: {dict(zip(metrics, values))}"
        attrs = {key: result[key] for key in recorded() if key in result and result[key] is not None}
        if stopped and result.get("over_limit"):
            attrs["over_limit"] = str(result["over_limit"])
        elif stopped:
            attrs.update(pruned_at_epoch=int(result["epoch"]), epochs=float(result["epoch"]))
        elif reason is not None:
            attrs["fail_reason"] = str(reason)[:1000]
        constraints = constraint_values(result, self.limits)
        set_user_attrs(ot_trial, attrs, {_CONSTRAINTS_KEY: constraints} if constraints is not None else None)
        if stopped:
            tell(self._ot_study, ot_trial, None, state=TrialState.PRUNED)
        elif reason is not None:
            tell(self._ot_study, ot_trial, None, state=TrialState.FAIL)
        else:
            tell(self._ot_study, ot_trial, [float(v) for v in values] if len(values) > 1 else float(values[0]),
                                state=TrialState.COMPLETE)
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> Any:
        return self._ot_study
