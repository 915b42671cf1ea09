"""MO-ASHA early stopping: the rung ranking, the rung rule on synthetic results, PRUNED bookkeeping in the
searcher, the scheduler registry and config section, and one small real search (Ray + Optuna).
The Pareto helpers it ranks with are tested against brute force in test_pareto.py."""
from __future__ import annotations

import csv
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.schedulers import TrialScheduler

from search import SCHEDULERS, ConfigError, parse_config
from search.pareto import non_dominated_sort
from search.schedulers import is_intermediate, make_scheduler
from search.schedulers.mo_asha import MOASHAScheduler, rung_milestones
from search.schedulers.mo_rank import RungFronts
from search.searcher import NasOptunaSearch

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP


# ---------------------------------------------------------------- rung ranking (the rule itself: test_mo_asha_rule.py)

def test_rung_ranks_fronts_then_hypervolume_contribution():
    losses = np.array([[0, 10], [10, 0], [1, 9], [5, 5], [6, 6], [0.5, 9.5], [np.inf, 0.0]], dtype=float)
    fronts = RungFronts(2)
    rows = [fronts.add(loss) for loss in losses]
    better = [fronts.better_than(r, "hypervolume") for r in rows]
    assert sorted(better[i] for i in (0, 1, 2, 3, 5)) == [0, 1, 2, 3, 4]  # front 0 first
    assert better[3] == 0                  # the knee point adds the most hypervolume on its own
    assert better[4] == 5                  # the dominated point after the front
    assert better[6] == 6                  # a non-finite objective (diverged accuracy) ranks last

def test_rung_milestones():
    assert rung_milestones(1, 3, 9) == [1, 3]            # no rung at max_t
    assert rung_milestones(1, 2, 10) == [1, 2, 4, 8]
    assert rung_milestones(2, 3, 3) == [2]


# ---------------------------------------------------------------- the rung rule on synthetic results

def trial(tid: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=tid)


def result(epoch: int, acc: float, macs: float) -> dict:
    return {"epoch": epoch, "val_acc": acc, "macs": macs, "done": False}


def sched(eta: float = 2, max_t: int = 9, grace: int = 1, ranking: str = "epsnet") -> MOASHAScheduler:
    return MOASHAScheduler(objectives=["val_acc", "macs"], modes=["max", "min"], max_t=max_t,
                           grace_period=grace, reduction_factor=eta, ranking=ranking)


def test_fewer_than_eta_results_a_result_behind_another_stops():
    s = sched(eta=3)
    assert s.on_trial_result(None, trial("a"), result(1, 0.9, 1.0)) == CONTINUE   # the first at a rung
    assert s.on_trial_result(None, trial("b"), result(1, 0.1, 5.0)) == STOP       # 1 of 2 ahead: 1/2 > 1/3
    assert s.on_trial_result(None, trial("c"), result(1, 0.9, 1.0)) == CONTINUE   # equal to the best: 0 ahead
    assert s.on_trial_result(None, trial("d"), result(1, 0.05, 6.0)) == STOP     # 3 of 4 ahead
    assert s.num_stopped == 2


def test_dominated_stopped_non_dominated_promoted():
    s = sched(eta=2)
    assert s.on_trial_result(None, trial("a"), result(1, 0.9, 1.0)) == CONTINUE
    assert s.on_trial_result(None, trial("b"), result(1, 0.5, 2.0)) == CONTINUE   # dominated; n = η keeps 2
    # c is worse in accuracy than both but the cheapest: front 0 = {a, c}, 1 of 3 ahead of c (a) → kept
    assert s.on_trial_result(None, trial("c"), result(1, 0.3, 0.5)) == CONTINUE
    assert s.on_trial_result(None, trial("d"), result(1, 0.4, 1.5)) == STOP       # dominated by a: 3 of 4 ahead
    # directions matter: with macs maximised, c is dominated by a and b (more accurate and larger)
    s2 = MOASHAScheduler(objectives=["val_acc", "macs"], modes=["max", "max"], max_t=9, grace_period=1,
                         reduction_factor=2)
    for tid, acc, macs in (("a", 0.9, 1.0), ("b", 0.95, 0.8)):
        s2.on_trial_result(None, trial(tid), result(1, acc, macs))
    assert s2.on_trial_result(None, trial("c"), result(1, 0.3, 0.5)) == STOP


@pytest.mark.parametrize("arriving, expected", [((0.5, 5.0), CONTINUE), ((0.87, 9.4), STOP)])
def test_hypervolume_contribution_breaks_ties_inside_the_front(arriving, expected):
    """Five earlier trials (four on a front crowded near the large end, one dominated); the sixth arrives on
    front 0 either in the empty middle (adds the most hypervolume: first) or wedged between two close
    neighbours (adds almost none: fifth); n=6, η=2: at most 3 ahead continue."""
    s = sched(eta=2, ranking="hypervolume")
    earlier = [("a", 0.9, 10.0), ("b", 0.1, 1.0), ("d", 0.88, 9.6), ("e", 0.86, 9.2), ("g", 0.05, 11.0)]
    for tid, acc, macs in earlier:  # recorded at the rung whatever was decided for them
        s.on_trial_result(None, trial(tid), result(1, acc, macs))
    losses = np.array([[-acc, macs] for _, acc, macs in earlier] + [[-arriving[0], arriving[1]]])
    assert non_dominated_sort(losses)[-1] == 0  # the arriving trial is non-dominated in both cases
    assert s.on_trial_result(None, trial("x"), result(1, *arriving)) == expected


@pytest.mark.parametrize("ranking, expected", [("hypervolume", CONTINUE), ("crowding", STOP), ("epsnet", STOP)])
def test_a_two_point_3d_front_by_each_ranking(ranking, expected):
    """b, then c: both on front 0, η=3, so c continues only in first place. Crowding distance gives both ∞
    (the earlier, b, wins the tie); the ε-net starts at the best first objective (b, more accurate);
    hypervolume contribution prefers c, far cheaper and nearly as accurate."""
    s = MOASHAScheduler(objectives=["val_acc", "macs", "latency_ms"], modes=["max", "min", "min"], max_t=4,
                        grace_period=1, reduction_factor=3, ranking=ranking)
    b, c = ({"epoch": 1, "val_acc": 0.41, "macs": 1.3, "latency_ms": 0.6},
            {"epoch": 1, "val_acc": 0.37, "macs": 0.4, "latency_ms": 0.27})
    assert s.on_trial_result(None, trial("b"), b) == CONTINUE
    assert s.on_trial_result(None, trial("c"), c) == expected


def test_rungs_progress_and_no_decision_off_rung_or_at_max_t():
    s = sched(eta=2, max_t=4)                     # rungs at 1 and 2; max_t=4 has none
    assert s.milestones == [1, 2]
    assert s.on_trial_result(None, trial("a"), result(1, 0.9, 1.0)) == CONTINUE
    assert s.on_trial_result(None, trial("b"), result(1, 0.8, 1.5)) == CONTINUE   # behind a; n = η keeps 2
    assert s.on_trial_result(None, trial("c"), result(1, 0.85, 0.4)) == CONTINUE  # front 0 with a, second
    assert s.on_trial_result(None, trial("d"), result(1, 0.1, 5.0)) == STOP       # 3 of 4 ahead
    assert s.on_trial_result(None, trial("a"), result(2, 0.95, 1.0)) == CONTINUE  # first at rung 2
    assert s.on_trial_result(None, trial("c"), result(2, 0.5, 2.0)) == CONTINUE   # dominated, but n = η
    assert s.on_trial_result(None, trial("b"), result(2, 0.4, 2.5)) == STOP       # 2 of 3 ahead
    assert set(s.rungs[0]) == {"a", "b", "c", "d"} and set(s.rungs[1]) == {"a", "b", "c"}
    # a repeated report at a rung already recorded, epoch 3 (off rung) and epoch 4 (= max_t) never stop
    assert s.on_trial_result(None, trial("a"), result(2, 0.0, 99.0)) == CONTINUE
    assert s.on_trial_result(None, trial("a"), result(3, 0.0, 99.0)) == CONTINUE
    assert s.on_trial_result(None, trial("a"), result(4, 0.0, 99.0)) == CONTINUE
    assert s.rungs[1]["a"].tolist() == [-0.95, 1.0]


def test_final_or_error_results_are_ignored():
    s = sched(eta=2)
    final = {"val_acc": 0.1, "macs": 9.0, "epochs": 3.0, "done": True}         # no "epoch": a final report
    err = {"epoch": 1, "trial_error": "boom", "done": True}
    assert not is_intermediate(final) and not is_intermediate(err) and is_intermediate(result(1, 0.5, 1.0))
    for r in (final, err, {"epoch": 1, "val_acc": 0.5, "done": False}):       # last one misses macs
        assert s.on_trial_result(None, trial("z"), r) == CONTINUE
    assert all(not r for r in s.rungs)


def test_nan_accuracy_ranks_worst():
    s = sched(eta=3)
    s.on_trial_result(None, trial("a"), result(1, 0.2, 5.0))
    assert s.on_trial_result(None, trial("b"), result(1, float("nan"), 0.1)) == STOP  # behind a despite macs
    assert set(s.rungs[0]) == {"a", "b"} and s.num_stopped == 1
    assert pickle.loads(pickle.dumps(s)).milestones == [1, 3]


# ---------------------------------------------------------------- resume: the rungs rebuilt from the storage

def _arrivals(seed: int, n: int, max_t: int) -> list[tuple[str, int, float, float]]:
    """Per-epoch reports of ``n`` trials run two at a time: ``(trial, epoch, val_acc, macs)`` in arrival order."""
    rng = np.random.default_rng(seed)
    curves = {f"t{i}": (rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.15), rng.uniform(1, 10)) for i in range(n)}
    out, running = [], []
    queue = list(curves)
    epoch = {}
    while queue or running:
        while len(running) < 2 and queue:
            running.append(queue.pop(0))
            epoch[running[-1]] = 0
        tid = running[int(rng.integers(len(running)))]
        epoch[tid] += 1
        start, gain, macs = curves[tid]
        out.append((tid, epoch[tid], min(1.0, start + gain * epoch[tid]), macs))
        if epoch[tid] == max_t:
            running.remove(tid)
    return out


def _drive(scheduler, arrivals, searcher=None) -> list[str]:
    """Feed ``arrivals`` to ``scheduler`` as Ray would (a stopped trial reports no more); with ``searcher``, also
    store them and tell each trial's end. Returns the decision per delivered report."""
    decisions, stopped, last = [], set(), {}
    for tid, epoch, acc, macs in arrivals:
        if tid in stopped:
            continue
        r = result(epoch, acc, macs)
        if searcher is not None and tid not in last:
            searcher.suggest(tid)
        decision = scheduler.on_trial_result(None, trial(tid), r)
        decisions.append(decision)
        last[tid] = r
        if searcher is not None:
            searcher.on_trial_result(tid, r)
        if decision == STOP:
            stopped.add(tid)
        if searcher is not None and (decision == STOP or epoch == scheduler.max_t):
            final = {**r, "done": True} if decision == STOP else {"val_acc": acc, "macs": macs, "epochs": epoch}
            searcher.on_trial_complete(tid, result=final)
    return decisions


def _cut(arrivals, after: int) -> int:
    """The first index past ``after`` reports at which no trial is in flight (every started one has ended)."""
    max_t = max(e for _, e, _, _ in arrivals)
    started, ended = set(), set()
    for i, (tid, epoch, _, _) in enumerate(arrivals):
        started.add(tid)
        if epoch == max_t:
            ended.add(tid)
        if i >= after and started == ended:
            return i + 1
    raise AssertionError("no quiet point")


def test_resumed_scheduler_takes_the_decisions_of_an_uninterrupted_one(tmp_path):
    """A search stopped at a quiet point and resumed (new scheduler, rungs replayed from the stored trials)
    decides the later reports exactly as one scheduler that saw everything; without the replay it does not."""
    from search.searcher import EPOCH_ATTR, epoch_arrivals

    arrivals = _arrivals(seed=3, n=14, max_t=4)
    cut = _cut(arrivals, after=len(arrivals) // 2)
    trained, later = arrivals[:cut], arrivals[cut:]

    def uninterrupted_decisions() -> list[str]:  # later reports of trials stopped before the cut never arrive
        s = sched(eta=3, max_t=4)
        _drive(s, trained)
        return _drive(s, later)

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    searcher = NasOptunaSearch(space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric=["val_acc", "macs"],
                               mode=["max", "min"], sampler=optuna.samplers.RandomSampler(seed=0),
                               storage=storage, study_name="s")
    first = sched(eta=3, max_t=4)
    _drive(first, trained, searcher)
    stored = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert {t.state for t in stored} == {TrialState.COMPLETE, TrialState.PRUNED}
    for t in stored:  # the first objective per epoch is an Optuna intermediate value (learning curves)
        reports = t.user_attrs[EPOCH_ATTR]
        assert t.intermediate_values == {r["epoch"]: r["values"]["val_acc"] for r in reports}
        assert sorted(t.intermediate_values) == list(range(1, len(reports) + 1))

    resumed = sched(eta=3, max_t=4)
    resumed.replay(epoch_arrivals(stored, ["val_acc", "macs"]))
    def rungs(s: MOASHAScheduler) -> list:  # every rung's loss vectors in recording order, and their fronts
        return [[v.tolist() for v in r.values()] for r in s.rungs] + [f.front.tolist() for f in s.fronts]

    assert rungs(resumed) == rungs(first) and resumed.num_stopped == first.num_stopped
    expected = uninterrupted_decisions()
    assert _drive(resumed, later) == expected
    assert _drive(sched(eta=3, max_t=4), later) != expected  # the state matters: forgetting it changes decisions


def test_interrupted_trials_are_not_replayed(tmp_path):
    from search.run import close_interrupted
    from search.searcher import epoch_arrivals

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    searcher = NasOptunaSearch(space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric=["val_acc", "macs"],
                               mode=["max", "min"], sampler=optuna.samplers.RandomSampler(seed=0),
                               storage=storage, study_name="s")
    for tid in ("done", "running"):
        searcher.suggest(tid)
        searcher.on_trial_result(tid, result(1, 0.5, 1.0))
    searcher.on_trial_complete("done", result={"val_acc": 0.6, "macs": 1.0, "epochs": 2})
    study = optuna.load_study(study_name="s", storage=storage)
    assert close_interrupted(study) == 1
    assert [(k, e) for k, e, _ in epoch_arrivals(study.get_trials(), ["val_acc", "macs"])] == [("stored-0", 1.0)]


def test_constructor_names_bad_arguments():
    for kwargs, field in (({"reduction_factor": 1}, "reduction_factor"), ({"grace_period": 0}, "grace_period"),
                          ({"max_t": 1}, "max_t"), ({"modes": ["max"]}, "modes")):
        args = {"objectives": ["val_acc", "macs"], "modes": ["max", "min"], "max_t": 3, **kwargs}
        with pytest.raises(ValueError, match=f"^{field}:"):
            MOASHAScheduler(**args)


# ---------------------------------------------------------------- config

def test_config_scheduler_section():
    cfg = parse_config({"scheduler": {"name": "mo_asha", "grace_period": 1, "reduction_factor": 2},
                        "proxy": {"epochs": 3}})
    s = make_scheduler(cfg.scheduler.name, cfg.scheduler.options, objectives=cfg.objectives, modes=cfg.directions,
                       max_t=cfg.proxy.epochs)
    assert isinstance(s, MOASHAScheduler) and s.milestones == [1, 2] and s.signs.tolist() == [-1.0, 1.0]
    assert cfg.scheduler.options == {"grace_period": 1, "reduction_factor": 2.0, "ranking": "epsnet"}
    assert parse_config({"scheduler": {"name": "mo_asha", "ranking": "crowding"}}).scheduler.options == \
        {"grace_period": 1, "reduction_factor": 3.0, "ranking": "crowding"}  # defaults declared where it registers
    assert make_scheduler("mo_asha", {"ranking": "hypervolume"}, objectives=["val_acc"], modes=["max"],
                          max_t=3).ranking == "hypervolume"
    assert make_scheduler("none", {}, objectives=["val_acc"], modes=["max"], max_t=3) is None


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_registered_scheduler_is_a_config_choice(name):
    """The config accepts every registered name (any spelling the registry normalises) and builds a Ray Tune
    scheduler from it, or None: Ray's FIFO, every trial to the end."""
    cfg = parse_config({"scheduler": {"name": name.upper()}, "proxy": {"epochs": 3}})
    assert cfg.scheduler.name == name
    built = make_scheduler(cfg.scheduler.name, cfg.scheduler.options, objectives=cfg.objectives,
                           modes=cfg.directions, max_t=cfg.proxy.epochs)
    assert built is None or isinstance(built, TrialScheduler)


@pytest.mark.parametrize("data, start", [
    ({"scheduler": {"name": "hyperband"}}, "scheduler.name: must be one of mo_asha, none; got 'hyperband'"),
    ({"scheduler": {"reduction_factor": 1}}, "scheduler.reduction_factor:"),
    ({"scheduler": {"name": "mo_asha", "grace_period": 0}}, "scheduler.grace_period: must be >= 1"),
    ({"scheduler": {"name": "mo_asha", "rungs": 3}}, "scheduler.rungs: not an option of scheduler 'mo_asha'"),
    ({"scheduler": {"name": "mo_asha", "ranking": "nsga2"}},
     "scheduler.ranking: must be one of epsnet, crowding, hypervolume, got 'nsga2'"),
    ({"scheduler": {"eta": 2}}, "scheduler.eta: not an option of scheduler 'none'"),
    ({"scheduler": {"name": "mo_asha", "grace_period": 3}, "proxy": {"epochs": 3}},
     "scheduler.grace_period: mo_asha needs proxy.epochs > grace_period"),
])
def test_config_scheduler_errors(data, start):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(start), str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- searcher: stopped → PRUNED, never COMPLETE

def test_searcher_tells_stopped_trials_pruned():
    storage = optuna.storages.InMemoryStorage()
    searcher = NasOptunaSearch(space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric=["val_acc", "macs"],
                               mode=["max", "min"], sampler=optuna.samplers.RandomSampler(seed=0),
                               storage=storage, study_name="s")
    for tid in ("stopped", "final", "failed"):
        searcher.suggest(tid)
    # what Ray hands over for a trial a scheduler stopped: its last per-epoch report, with Ray's done=True
    searcher.on_trial_complete("stopped", result={"epoch": 1, "val_acc": 0.99, "macs": 1.0, "arch_id": "x1",
                                                  "done": True})
    searcher.on_trial_complete("final", result={"val_acc": 0.5, "macs": 2.0, "epochs": 3.0, "done": True})
    searcher.on_trial_complete("failed", result={"epoch": 2, "trial_error": "RuntimeError: x", "done": True})
    study = searcher.study
    by_state = {t.state: t for t in study.get_trials()}
    pruned = by_state[TrialState.PRUNED]
    assert pruned.values is None and pruned.user_attrs["pruned_at_epoch"] == 1
    assert pruned.user_attrs["val_acc"] == 0.99 and pruned.user_attrs["epochs"] == 1.0
    assert by_state[TrialState.COMPLETE].values == [0.5, 2.0]
    assert by_state[TrialState.FAIL].user_attrs["fail_reason"] == "RuntimeError: x"
    # the epoch-1 accuracy of 0.99 would dominate; as PRUNED it is not on the front
    assert [t.number for t in study.best_trials] == [by_state[TrialState.COMPLETE].number]


def test_tpe_counts_pruned_trials_as_worse_than_complete_ones():
    from optuna.samplers._tpe.sampler import _split_trials

    searcher = NasOptunaSearch(space=lambda t: {"x": t.suggest_float("x", 0, 1)}, metric=["val_acc", "macs"],
                               mode=["max", "min"], storage=optuna.storages.InMemoryStorage(), study_name="s",
                               sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True))
    for i in range(8):
        searcher.suggest(f"t{i}")
        if i % 3 == 0:  # complete
            searcher.on_trial_complete(f"t{i}", result={"val_acc": 0.1 * i, "macs": 10.0 - i, "done": True})
        else:           # stopped at a rung with a (misleadingly) high early accuracy
            searcher.on_trial_complete(f"t{i}", result={"epoch": 1, "val_acc": 0.99, "macs": 0.1, "done": True})
    assert searcher.suggest("t8")["x"] is not None  # TPE samples with PRUNED trials in the study
    study = searcher.study
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    below, above = _split_trials(study, done, 2)
    assert len(below) == 2 and all(t.state == TrialState.COMPLETE for t in below)
    assert {t.number for t in done if t.state == TrialState.PRUNED} <= {t.number for t in above}


# ---------------------------------------------------------------- a small real search

@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="nasmo", dir="/tmp")  # short: Ray's socket paths are length-limited
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_real_search_prunes_and_exports_only_complete(tmp_path, ray_tmp):
    cfg = {
        "name": "moasha",
        "data": {"name": "digits", "val_fraction": 0.2},
        "space": {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0, 2.0], "depth": [1, 2],
                  "order": ["pre"]},
        "objectives": ["val_acc", "macs"],
        "proxy": {"epochs": 3, "batch_size": 16, "lr": 0.05},
        "search": {"sampler": "random", "n_trials": 6, "max_concurrent": 1, "seed": 0},
        "scheduler": {"name": "mo_asha", "grace_period": 1, "reduction_factor": 2},
        "ray": {"num_cpus": 1, "temp_dir": ray_tmp},
    }
    cfg_path = tmp_path / "mo.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "search", str(cfg_path), "--results",
                           str(tmp_path / "results")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PRUNED at epoch" in proc.stdout
    run = tmp_path / "results" / "moasha"

    study = optuna.load_study(study_name="moasha", storage=f"sqlite:///{run / 'study.db'}")
    trials = study.get_trials()
    states = [t.state for t in trials]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    ran = [t for t in trials if "cached_from" not in t.user_attrs]  # re-proposals answered from these
    assert len(ran) == 6 and TrialState.FAIL not in states
    assert pruned and TrialState.COMPLETE in states
    for t in pruned:
        assert t.values is None and t.user_attrs["pruned_at_epoch"] in (1, 2)
        assert 0.0 <= t.user_attrs["val_acc"] <= 1.0 and t.user_attrs["macs"] > 0
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["epochs"] == 3.0 and 0.1 < t.values[0] <= 1.0

    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert [r["state"] for r in rows] == [s.name for s in states]
    assert {int(r["number"]) for r in rows if r["state"] == "PRUNED"} == {t.number for t in pruned}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["states"]["PRUNED"] == len(pruned)
    front_numbers = {f["number"] for f in summary["front"]}
    assert front_numbers and not front_numbers & {t.number for t in pruned}
    assert {t.number for t in study.best_trials if "cached_from" not in t.user_attrs} == front_numbers
