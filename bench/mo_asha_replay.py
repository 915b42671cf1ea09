"""MO-ASHA replayed on a learning-curve table: compute spent against hypervolume kept, ours beside Syne Tune's.

    .venv/bin/python bench/mo_asha_replay.py                         # bench/data/quickstart_curves.json, 10 seeds
    .venv/bin/python bench/mo_asha_replay.py --seeds 20 --eta 3 --concurrent 4 --json /tmp/replay.json
    .venv/bin/python bench/mo_asha_replay.py --ranking epsnet --no-peers

No training: every trial is a row of the table (bench/curve_table.py), whose validation accuracy after each epoch
was measured once. For each seed the table's architectures arrive in a seeded random order (``--trials`` of them,
default all); ``--concurrent k`` runs k at a time on k simulated workers, each epoch lasting the row's measured
seconds / max_t, reports handled in the order their epochs end (a finished or stopped trial's worker takes the next
arrival). After every epoch a trial reports its objective vector at that epoch (accuracy after e
epochs, its MACs) to the scheduler, which says continue or stop. The schedulers, on the same arrivals:

- ``none``: every trial trains all ``max_t`` epochs (the full-budget run every other is measured against);
- ``ours/<ranking>``: search/schedulers/mo_asha.py's ``MOASHAScheduler``, driven through ``decide`` — the
  decision entry point its ``replay`` uses on resume — with grace period 1, ``--eta`` and each ``--ranking``;
- ``syne_tune``: Syne Tune's ``MOASHA`` (same η, grace period 1, max_t; one bracket) driven by
  ``on_trial_add``/``on_trial_result``/``on_trial_complete`` with its own ``Trial`` objects. It minimises every
  metric, so a maximised objective is reported negated. With one objective it gets ``FixedObjectivePriority``
  (ASHA's order), with several its default ``NonDominatedPriority`` (non-dominated sort + ε-net).

Compute: trial-epochs trained as a fraction of the full budget's (``trials × max_t``). Results: as search/results
exports them, only trials that trained all ``max_t`` epochs (COMPLETE) count, with their final accuracy; a stopped
trial is not a result (its accuracy was measured part-way through a cosine schedule planned for ``max_t``).
Hypervolume (Zitzler & Thiele 1998) of those results as in bench/early_stopping.py: objectives turned into
minimisation, scaled to [0, 1] by their minimum and maximum over the complete trials of all the runs of the seed
(the ``none`` run holds them all), reference point 1.1; exact, ``search.pareto.hypervolume`` (Optuna's WFG); quoted
as a fraction of the ``none`` run's. Mean ± sd over the seeds. Aim: ≤ 40 % compute for ≥ 90 % hypervolume.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TABLE = ROOT / "bench" / "data" / "quickstart_curves.json"
AIM = (0.40, 0.90)  # at most this compute fraction for at least this hypervolume fraction


def load_table(path: Path) -> dict[str, Any]:
    """The curve table at ``path``; every row's ``val_acc`` curve must have ``max_t`` entries."""
    doc = json.loads(Path(path).read_text())
    max_t = int(doc["max_t"])
    for r in doc["rows"]:
        if len(r["val_acc"]) != max_t:
            raise ValueError(f"rows[{r['arch_id']}].val_acc: {len(r['val_acc'])} epochs, the table's max_t is {max_t}")
    return doc


def value_at(row: dict[str, Any], objective: str, epoch: int) -> float:
    """``objective`` of ``row`` after ``epoch`` epochs: a per-epoch curve is read at the epoch, a scalar as is."""
    v = row[objective]
    return float(v[epoch - 1]) if isinstance(v, list) else float(v)


def directions(objectives: Sequence[str]) -> list[str]:
    from evaluators import get_metric

    return [get_metric(o).direction for o in objectives]


class FullBudget:
    """No early stopping."""

    def add(self, trial: int) -> None:
        pass

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        return True

    def complete(self, trial: int, epoch: int, values: Sequence[float]) -> None:
        pass


class Ours:
    """search/schedulers/mo_asha.py's ``MOASHAScheduler``, each report handed to ``decide``."""

    def __init__(self, *, objectives: Sequence[str], max_t: int, eta: float, ranking: str) -> None:
        from search.schedulers.mo_asha import MOASHAScheduler

        self.scheduler = MOASHAScheduler(objectives=objectives, modes=directions(objectives), max_t=max_t,
                                         grace_period=1, reduction_factor=eta, ranking=ranking)

    def add(self, trial: int) -> None:
        pass

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        from ray.tune.schedulers import TrialScheduler

        return self.scheduler.decide(str(trial), float(epoch), values) == TrialScheduler.CONTINUE

    def complete(self, trial: int, epoch: int, values: Sequence[float]) -> None:
        self.report(trial, epoch, values)  # the last per-epoch report; a trial at max_t is never stopped


class SyneTune:
    """Syne Tune's ``MOASHA`` with its ``Trial`` objects (module docstring)."""

    def __init__(self, *, objectives: Sequence[str], max_t: int, eta: float) -> None:
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA
        from syne_tune.optimizer.schedulers.multiobjective.multiobjective_priority import (
            FixedObjectivePriority,
            NonDominatedPriority,
        )

        self.keys = [f"neg_{o}" if d == "max" else o for o, d in zip(objectives, directions(objectives))]
        self.signs = [-1.0 if k.startswith("neg_") else 1.0 for k in self.keys]
        priority = FixedObjectivePriority() if len(objectives) == 1 else NonDominatedPriority()
        self.scheduler = MOASHA({}, metrics=self.keys, do_minimize=True, time_attr="epoch", max_t=max_t,
                                grace_period=1, reduction_factor=eta, multiobjective_priority=priority)
        self.trials: dict[int, Any] = {}

    def _result(self, epoch: int, values: Sequence[float]) -> dict[str, float]:
        return {"epoch": epoch, **{k: s * v for k, s, v in zip(self.keys, self.signs, values)}}

    def add(self, trial: int) -> None:
        from syne_tune.backend.trial_status import Trial

        self.trials[trial] = Trial(trial_id=trial, config={}, creation_time=datetime.datetime.now())
        self.scheduler.on_trial_add(self.trials[trial])

    def report(self, trial: int, epoch: int, values: Sequence[float]) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        action = self.scheduler.on_trial_result(self.trials[trial], self._result(epoch, values))
        return action == SchedulerDecision.CONTINUE

    def complete(self, trial: int, epoch: int, values: Sequence[float]) -> None:
        self.scheduler.on_trial_result(self.trials[trial], self._result(epoch, values))  # STOP at max_t: done
        self.scheduler.on_trial_complete(self.trials[trial], self._result(epoch, values))


def replay(rows: Sequence[dict[str, Any]], policy: Any, *, objectives: Sequence[str], max_t: int,
           concurrent: int = 1) -> tuple[list[int], set[int]]:
    """Run ``rows`` (trial i = rows[i], arriving in that order) under ``policy`` on ``concurrent`` workers; the epochs
    each trial trained and the set of trials that trained all ``max_t``.

    Simulated time: an epoch of row i lasts its measured ``seconds / max_t`` (1 when the row has no ``seconds``);
    reports are handled in the order epochs end (ties: the earlier-started trial first), and a worker whose trial
    completes or stops starts the next arrival at once."""
    import heapq

    trained, complete = [0] * len(rows), set()
    epoch = [float(r.get("seconds", max_t)) / max_t for r in rows]
    running: list[tuple[float, int]] = []  # (time its current epoch ends, trial)
    waiting = iter(range(len(rows)))

    def start(now: float) -> None:
        i = next(waiting, None)
        if i is not None:
            policy.add(i)
            heapq.heappush(running, (now + epoch[i], i))

    for _ in range(concurrent):
        start(0.0)
    while running:
        now, i = heapq.heappop(running)
        trained[i] = e = trained[i] + 1
        values = [value_at(rows[i], o, e) for o in objectives]
        if e == max_t:
            policy.complete(i, e, values)
            complete.add(i)
            start(now)
        elif policy.report(i, e, values):
            heapq.heappush(running, (now + epoch[i], i))
        else:
            start(now)
    return trained, complete


def losses(rows: Sequence[dict[str, Any]], objectives: Sequence[str], *, max_t: int) -> np.ndarray:
    """Final objective vectors of ``rows`` as minimisation (a maximised objective negated)."""
    sign = np.array([-1.0 if d == "max" else 1.0 for d in directions(objectives)])
    return sign * np.array([[value_at(r, o, max_t) for o in objectives] for r in rows]).reshape(-1, len(objectives))


def policies(names: Sequence[str], *, objectives: Sequence[str], max_t: int, eta: float) -> dict[str, Any]:
    """A fresh scheduler for every name: ``none``, ``ours/<ranking>``, ``syne_tune``."""
    out: dict[str, Any] = {}
    for name in names:
        if name == "none":
            out[name] = FullBudget()
        elif name.startswith("ours/"):
            out[name] = Ours(objectives=objectives, max_t=max_t, eta=eta, ranking=name.split("/", 1)[1])
        elif name == "syne_tune":
            out[name] = SyneTune(objectives=objectives, max_t=max_t, eta=eta)
        else:
            raise ValueError(f"scheduler: unknown {name!r}; valid: none, ours/<ranking>, syne_tune")
    return out


def run_seed(rows: Sequence[dict[str, Any]], names: Sequence[str], *, seed: int, trials: int | None,
             objectives: Sequence[str], max_t: int, eta: float, concurrent: int) -> dict[str, dict[str, Any]]:
    """One seed: every scheduler on the same arrivals; per scheduler its compute and hypervolume fractions."""
    from search.pareto import hypervolume, non_dominated_sort, normalise, reference_point

    order = np.random.default_rng(seed).permutation(len(rows))[:trials]
    arrivals = [rows[i] for i in order]
    every = losses(arrivals, objectives, max_t=max_t)
    ref = reference_point(len(objectives))
    full = hypervolume(normalise(every), ref)
    front = set(np.flatnonzero(non_dominated_sort(every) == 0).tolist())
    out = {}
    for name, policy in policies(names, objectives=objectives, max_t=max_t, eta=eta).items():
        trained, complete = replay(arrivals, policy, objectives=objectives, max_t=max_t, concurrent=concurrent)
        kept = every[sorted(complete)]
        hv = hypervolume(normalise(kept, over=every), ref) if len(kept) else 0.0
        out[name] = {"compute": sum(trained) / (len(arrivals) * max_t), "hv": hv / full if full > 0 else float("nan"),
                     "complete": len(complete), "front_kept": len(front & complete) / len(front),
                     "front_size": len(front), "epochs": trained}
    return out


def bench(table: dict[str, Any], *, seeds: int, trials: int | None, eta: float, rankings: Sequence[str],
          peers: bool, concurrent: int, objectives: Sequence[str]) -> dict[str, Any]:
    """Every scheduler over ``seeds`` seeds: per-seed results and mean ± sd of compute and hv fractions."""
    names = ["none", *(f"ours/{r}" for r in rankings), *(["syne_tune"] if peers else [])]
    per_seed = [run_seed(table["rows"], names, seed=s, trials=trials, objectives=objectives, max_t=table["max_t"],
                         eta=eta, concurrent=concurrent) for s in range(seeds)]
    summary = {}
    for name in names:
        c = [r[name]["compute"] for r in per_seed]
        h = [r[name]["hv"] for r in per_seed]
        summary[name] = {"compute_mean": statistics.fmean(c), "compute_sd": _sd(c), "hv_mean": statistics.fmean(h),
                         "hv_sd": _sd(h), "complete_mean": statistics.fmean(r[name]["complete"] for r in per_seed),
                         "front_kept_mean": statistics.fmean(r[name]["front_kept"] for r in per_seed),
                         "aim_met": sum(ci <= AIM[0] and hi >= AIM[1] for ci, hi in zip(c, h))}
    n = len(table["rows"]) if trials is None else min(trials, len(table["rows"]))
    return {"settings": {"seeds": seeds, "trials": n, "eta": eta, "grace_period": 1, "max_t": table["max_t"],
                         "concurrent": concurrent, "objectives": list(objectives), "rankings": list(rankings)},
            "rung_fidelity": rung_fidelity(table["rows"], max_t=table["max_t"], eta=eta),
            "summary": summary, "per_seed": per_seed}


def rung_fidelity(rows: Sequence[dict[str, Any]], *, max_t: int, eta: float) -> dict[int, float]:
    """Spearman ρ (scipy) between every row's accuracy at each rung epoch and at ``max_t``: how well a rung
    foresees the final ranking by accuracy."""
    from scipy.stats import spearmanr

    from search.schedulers.mo_asha import rung_milestones

    final = [r["val_acc"][max_t - 1] for r in rows]
    return {int(m): float(spearmanr([r["val_acc"][int(m) - 1] for r in rows], final)[0])
            for m in rung_milestones(1, eta, max_t)}


def _sd(xs: Sequence[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def format_report(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"{s['trials']} trials × max_t {s['max_t']} epochs, η={s['eta']:g}, grace 1, "
             f"{s['concurrent']} at a time, "
             f"objectives {', '.join(s['objectives'])}, {s['seeds']} seeds (mean ± sd)",
             f"{'scheduler':<16}{'compute':>17}{'hypervolume':>17}{'complete':>10}{'front kept':>12}{'aim met':>9}"]
    for name, m in result["summary"].items():
        lines.append(f"{name:<16}{m['compute_mean']:>10.1%} ± {m['compute_sd']:<5.1%}{m['hv_mean']:>10.3f} ± "
                     f"{m['hv_sd']:<5.3f}{m['complete_mean']:>10.1f}{m['front_kept_mean']:>12.0%}"
                     f"{m['aim_met']:>5}/{s['seeds']}")
    size = statistics.fmean(r["none"]["front_size"] for r in result["per_seed"])
    lines.append(f"the full-budget front holds {size:.1f} trials on average")
    rho = ", ".join(f"epoch {m}: {r:.2f}" for m, r in result["rung_fidelity"].items())
    lines.append(f"Spearman ρ of val_acc at each rung with val_acc at max_t, over the table: {rho}")
    lines.append(f"compute: trial-epochs / (trials × max_t); hypervolume: of the complete trials, fraction of "
                 f"none's; front kept: share of none's Pareto-optimal trials that completed; aim: ≤ {AIM[0]:.0%} "
                 f"compute for ≥ {AIM[1]:.0%} hypervolume")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from search.schedulers.mo_rank import RANKINGS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--trials", type=int, default=None, help="trials per seed (default: every row of the table)")
    ap.add_argument("--eta", type=float, default=3.0, help="reduction factor η")
    ap.add_argument("--ranking", default="epsnet,crowding", help=f"our in-front orders, of {', '.join(RANKINGS)}")
    ap.add_argument("--concurrent", type=int, default=1, help="trials at a time (their epochs interleave)")
    ap.add_argument("--objectives", default="val_acc,macs")
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    ap.add_argument("--no-peers", action="store_true", help="leave Syne Tune's MOASHA out")
    args = ap.parse_args(argv)
    rankings = args.ranking.split(",")
    bad = [r for r in rankings if r not in RANKINGS]
    small = args.seeds < 1 or args.concurrent < 1 or (args.trials is not None and args.trials < 1)
    if bad or small or not args.eta > 1:
        field = "--ranking" if bad else "--seeds/--concurrent/--trials (>= 1), --eta (> 1)"
        print(f"{field}: invalid; valid rankings: {', '.join(RANKINGS)}", file=sys.stderr)
        return 2
    if not args.no_peers:
        try:
            import syne_tune  # noqa: F401
        except ImportError:
            print("syne-tune: not installed; install the 'peers' extra or pass --no-peers", file=sys.stderr)
            return 2
    result = bench(load_table(args.table), seeds=args.seeds, trials=args.trials, eta=args.eta, rankings=rankings,
                   peers=not args.no_peers, concurrent=args.concurrent, objectives=args.objectives.split(","))
    print(format_report(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
