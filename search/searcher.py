"""Ray Tune's ``OptunaSearch``, recording what a trial measured and why it failed in the Optuna storage.

Ray's searcher tells Optuna only the objective values. Ours also stores, as trial user attributes,
the architecture (``arch_id``, ``arch_yaml``, set at sampling time so failed trials keep them), every
metric of the table the trial computed (params, flops, macs, latency, losses, epochs, seconds...), where
and how it ran and, for a failed trial, its reason.
A trial whose result carries ``trial_error`` or a non-finite objective is told as FAIL. A trial whose
last result is a per-epoch report (a scheduler stopped it early: search/schedulers/) is told as PRUNED,
never COMPLETE, with ``pruned_at_epoch`` and its values at that epoch as user attributes.

Every per-epoch report is stored as it arrives: the first objective as the trial's Optuna intermediate value
at step ``epoch`` (optuna-dashboard draws them as learning curves), and every objective, with the arrival
time, appended to the user attribute :data:`EPOCH_ATTR`, from which :func:`epoch_arrivals` rebuilds a
scheduler's rungs on resume.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Sequence

from optuna.trial import FrozenTrial, TrialState
from ray.tune.search.optuna import OptunaSearch

from evaluators import list_metrics

from .schedulers import is_intermediate

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
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Store a per-epoch report (see the module docstring); Ray's version skips multi-objective studies.

        Optuna's ``Trial.report`` refuses multi-objective studies, so the intermediate value goes to the storage
        through the trial's ``storage`` and ``_trial_id``, here only."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if trial_id in self._completed_trials or trial_id not in self._ot_trials or not is_intermediate(result) \
                or any(result.get(m) is None for m in metrics):
            return
        ot_trial = self._ot_trials[trial_id]
        epoch = int(result["epoch"])
        values = {m: float(result[m]) for m in metrics}
        ot_trial.storage.set_trial_intermediate_value(ot_trial._trial_id, epoch, values[metrics[0]])
        at = max(time.time(), getattr(self, "_last_at", 0.0) + 1e-6)  # strictly increasing: arrival order
        self._last_at = at
        history = list(ot_trial.user_attrs.get(EPOCH_ATTR, []))
        ot_trial.set_user_attr(EPOCH_ATTR, [*history, {"epoch": epoch, "at": at, "values": values}])

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
        stopped = reason is None and is_intermediate(result)
        if reason is None and not stopped and any(v is None or not math.isfinite(float(v)) for v in values):
            reason = f"missing or non-finite objective: {dict(zip(metrics, values))}"
        for key in recorded():
            if key in result and result[key] is not None:
                ot_trial.set_user_attr(key, result[key])
        if stopped:
            ot_trial.set_user_attr("pruned_at_epoch", int(result["epoch"]))
            ot_trial.set_user_attr("epochs", float(result["epoch"]))
            self._ot_study.tell(ot_trial, None, state=TrialState.PRUNED)
        elif reason is not None:
            ot_trial.set_user_attr("fail_reason", str(reason)[:1000])
            self._ot_study.tell(ot_trial, None, state=TrialState.FAIL)
        else:
            self._ot_study.tell(ot_trial, [float(v) for v in values] if len(values) > 1 else float(values[0]),
                                state=TrialState.COMPLETE)
        self._completed_trials.add(trial_id)

    @property
    def study(self) -> Any:
        return self._ot_study
