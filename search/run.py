"""Run a search: Optuna samples, Ray Tune schedules, every trial lands in the Optuna storage.

``run_search(space, evaluate, *, objectives, sampler, storage, ...)`` takes ready parts (like
``optuna.create_study(sampler=..., storage=...)``); ``search_from_config`` builds them from a config.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import optuna
from optuna.trial import TrialState

from evaluators import get_metric
from space import from_yaml

from .cluster import check_resources, claim_run, connect, record_driver, session_dir
from .config import Config, dump_config
from .errors import ConfigError
from .faults import fault_kind
from .lease import LEASE_ATTR, StudyLease, abandoned_trials, record_trial_heartbeat, storage_handle
from .limits import given_limits
from .resume import fingerprint, fingerprint_change, read_record, resume_storage, write_record
from .samplers import make_sampler
from .schedulers import is_intermediate, make_scheduler
from .searcher import Limit, NasOptunaSearch, epoch_arrivals
from .space_def import InvalidSample, SearchSpace
from .storage import deferred_params, make_storage, set_user_attrs

if TYPE_CHECKING:
    from .evaluation import Screen

log = logging.getLogger("nas.search")

FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


def close_interrupted(study: optuna.Study, *, owner: str | None = None) -> int:
    """Mark abandoned RUNNING trials FAIL ('interrupted') and re-queue their parameters; return how many.

    Abandoned: no live driver owns them (search/lease.py: no owner, an owner on this machine that no longer
    runs, or a heartbeat older than the grace period); the trials of a live driver are left alone. An
    interrupted trial does not count against the budget (:func:`budget_used`). One whose sampling had
    finished (it has an ``arch_id``) is re-queued (``study.enqueue_trial`` with its parameters), so the
    resumed search evaluates that architecture first; one killed while being sampled is not.

    ``owner``: a driver id (search/lease.py) whose RUNNING trials are closed too, live or not: the driver
    itself, on Ctrl-C.
    """
    n = 0
    mine = [] if owner is None else [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                                     if t.user_attrs.get(LEASE_ATTR) == owner]
    seen = {t.number for t in mine}
    for t in mine + [t for t in abandoned_trials(study) if t.number not in seen]:
        try:
            _close_as_interrupted(study, t)
        except optuna.exceptions.UpdateFinishedTrialError:  # its driver finished it meanwhile
            continue
        if "arch_id" in t.user_attrs:
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
        n += 1
    return n


def _close_as_interrupted(study: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
    """Mark a RUNNING trial FAIL with the reason 'interrupted' (through the storage: Optuna has no public API
    to set attributes on a trial the caller did not ask for; :func:`search.lease.storage_handle`)."""
    storage, _, trial_id = storage_handle(study, t)
    storage.set_trial_user_attr(trial_id, "fail_reason", "interrupted: the search driver stopped")
    storage.set_trial_user_attr(trial_id, "interrupted", True)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def budget_used(study: optuna.Study) -> int:
    """Finished trials that count against ``search.n_trials``: all but those a killed driver left unfinished, the
    re-proposed architectures answered from another trial (``cached_from``) and the candidates screening left
    untrained (``screened_out``; search/searcher.py)."""
    return sum(not t.user_attrs.get("interrupted") and "cached_from" not in t.user_attrs
               and "screened_out" not in t.user_attrs for t in study.get_trials(deepcopy=False, states=FINISHED))


def _trainable(config: dict[str, Any], evaluate: Callable) -> None:
    """Ray Tune function trainable: rebuild the arch, evaluate it, report every epoch."""
    from ray import tune

    from .evaluation import ConstraintViolation

    if "invalid" in config:
        tune.report({"trial_error": f"InvalidSample: {config['invalid']}"})
        return
    try:
        arch = from_yaml(config["arch_yaml"])
        final = evaluate(arch, lambda m: tune.report({**m, "done": False}))
        tune.report({**final, **_where(), "done": True})
    except ConstraintViolation as exc:  # told PRUNED with its constraint values (search/searcher.py)
        tune.report({**exc.metrics, "over_limit": str(exc), "done": True})
    except Exception as exc:  # recorded with its reason; the search goes on
        tune.report({"trial_error": f"{type(exc).__name__}: {exc}"[:1000]})


def _where() -> dict[str, Any]:
    """Which Ray node ran the trial (``ip/node-id prefix``) and its torch thread count."""
    import ray
    import torch

    ctx = ray.get_runtime_context()
    return {"node": f"{ray.util.get_node_ip_address()}/{ctx.get_node_id()[:8]}", "threads": torch.get_num_threads()}


class DefineByRun:
    """Optuna define-by-run space for Ray's OptunaSearch (a class, so the searcher can be pickled).

    Records ``arch_id``/``arch_yaml`` on the Optuna trial at sampling time; an invalid combination
    becomes ``{"invalid": reason}`` and the trial fails with that reason without building anything. A re-proposed
    architecture is answered by the searcher before it reaches Ray (search/searcher.py).
    ``owner``: the driver's id (search/lease.py), recorded with the sampled parameters and ``arch_id``, after the
    trial's first heartbeat (a driver killed before that leaves the trial without an owner: abandoned).
    """

    def __init__(self, space: SearchSpace, objectives: Sequence[str], owner: str | None = None) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.owner = owner

    def __call__(self, trial: Any) -> dict[str, Any]:
        owner = {}
        if self.owner is not None:
            record_trial_heartbeat(trial.study, trial)
            owner = {LEASE_ATTR: self.owner}
        with deferred_params(trial):  # the parameters, the owner and the outcome below: one transaction
            try:
                arch = self.space.sample(trial)
            except InvalidSample as exc:
                set_user_attrs(trial, {**owner, "fail_reason": f"InvalidSample: {exc}"})
                return {"invalid": str(exc)}
            text = arch.to_yaml()
            set_user_attrs(trial, {**owner, "arch_id": arch.arch_id, "arch_yaml": text})
        return {"arch_yaml": text}


class Progress:
    """A Ray Tune callback printing one line per finished trial (and the running best)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from ray.tune import Callback

        class _Progress(Callback):
            def __init__(self, total: int, done: int, objectives: Sequence[str], out: Callable[[str], None]):
                self.total, self.done, self.objectives, self.out = total, done, list(objectives), out
                self.best = -math.inf
                self.failed = self.over_limit = 0
                self.kinds: dict[str, int] = {}
                self.t0 = time.time()

            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.done += 1
                r = trial.last_result or {}
                head = f"[{self.done:>3}/{self.total}] {time.time() - self.t0:6.1f}s"
                if r.get("over_limit") and "trial_error" not in r:
                    self.over_limit += 1
                    self.out(f"{head} {r.get('arch_id', '?'):12}  over a limit, not trained: {r['over_limit']}")
                    return
                if "trial_error" in r or "val_acc" not in r:
                    self.failed += 1
                    kind = fault_kind(str(r.get("trial_error", "")))
                    self.kinds[kind] = self.kinds.get(kind, 0) + 1
                    self.out(f"{head} FAIL   {r.get('trial_error', 'no result')}")
                    return
                vals = "  ".join(_fmt(k, r.get(k)) for k in self.objectives)
                if is_intermediate(r):  # stopped early by the scheduler: told PRUNED, not a final result
                    self.out(f"{head} {r.get('arch_id', '?'):12}  {vals}  PRUNED at epoch {r['epoch']}")
                    return
                self.best = max(self.best, r["val_acc"])
                self.out(f"{head} {r.get('arch_id', '?'):12}  {vals}  best val_acc {self.best:.4f}")

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.done += 1
                self.failed += 1
                self.kinds["crash"] = self.kinds.get("crash", 0) + 1
                self.out(f"[{self.done:>3}/{self.total}] FAIL   trial {trial.trial_id}: {_trial_error(trial)}")

        return _Progress(*args, **kwargs)


def _trial_error(trial: Any) -> str:
    """One line for a trial Ray marked ERROR (its process died, or it raised outside the evaluation)."""
    try:
        lines = [ln.strip() for ln in Path(trial.error_file).read_text().splitlines()[1:] if ln.strip()]
        text = lines[0][:160] if lines else "no error text"
    except Exception:
        text = "the trial process failed"
    where = getattr(getattr(trial, "storage", None), "trial_fs_path", None)
    return f"{text} (trace: {where}/error.txt)" if where else text


def _trial_name(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _fmt(key: str, value: Any) -> str:
    return f"{key}=-" if value is None else f"{key}={get_metric(key).format(value)}"


def run_search(space: SearchSpace, evaluate: Callable, *, objectives: Sequence[str],
               sampler: optuna.samplers.BaseSampler, storage: optuna.storages.BaseStorage, study_name: str,
               n_trials: int, run_dir: Path, max_concurrent: int | None = None,
               resources: dict[str, float] | None = None, out: Callable[[str], None] = print,
               study_attrs: dict[str, Any] | None = None, scheduler: Any | None = None,
               lease: StudyLease | None = None, limits: Sequence[Limit] = (),
               trial_logs: bool = True, screen: Screen | None = None) -> optuna.Study:
    """Run (or continue) the study ``study_name`` until ``n_trials`` distinct architectures were evaluated
    (:func:`budget_used`), or the space is exhausted (search/searcher.py: one line says so).

    ``scheduler``: a Ray Tune TrialScheduler (e.g. search/schedulers/mo_asha.py's MO-ASHA) or None (FIFO).
    ``lease``: this driver's lease on the study (search/lease.py; the caller releases it): its trials are
    owned and kept beating, so another driver never closes them; without one they carry no owner.
    ``limits``: the hard limits whose constraint values every trial stores for the sampler (search/searcher.py).
    ``trial_logs``: keep Ray Tune's per-trial JSON/CSV/TensorBoard logs (``ray.trial_logs``).
    ``screen``: proxy-guided search (``search.screen``; search/searcher.py): the best of its candidates by a cheap
    metric, scored here in the driver, is trained; the others are recorded PRUNED and not counted.
    The objective names are the study's metric names (optuna-dashboard's axis labels)."""
    from ray import tune

    modes = [get_metric(o).direction for o in objectives]
    directions = ["maximize" if mode == "max" else "minimize" for mode in modes]
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise ConfigError(f"objectives: the stored study {study_name!r} has directions "
                          f"{[d.name.lower() for d in study.directions]}, the config asks for {directions}")
    with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(objectives))
    for key, value in {**(study_attrs or {}), "constraint_names": [name for name, _, _ in limits]}.items():
        study.set_user_attr(key, value)
    interrupted = close_interrupted(study)
    done = budget_used(study)
    remaining = n_trials - done
    if interrupted:
        out(f"marked {interrupted} interrupted trial(s) FAIL; re-queued their architectures "
            f"(not counted in the budget)")
    if remaining <= 0:
        out(f"study {study_name!r} already has {done} finished trials (budget {n_trials}); nothing to run")
        return study
    if scheduler is not None and hasattr(scheduler, "replay"):
        arrivals = epoch_arrivals(study.get_trials(deepcopy=False), objectives)
        scheduler.replay(arrivals)
        if arrivals:
            out(f"scheduler: replayed {len(arrivals)} per-epoch report(s) of the stored trials into its rungs")

    searcher = NasOptunaSearch(space=DefineByRun(space, objectives, lease.owner if lease else None),
                               metric=list(objectives),
                               mode=modes, sampler=sampler, storage=storage,
                               study_name=study_name, limits=limits, screen=screen)
    # A failed trial reports only ``trial_error``; Tune's strict check would abort the whole run on it.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # one FAIL line per trial; traces stay in error.txt
    # Tune's own SIGINT handler ends the run as if it had finished (running trials told with their last epoch,
    # the export run on a half search); without it Ctrl-C raises KeyboardInterrupt out of tuner.fit.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if trial_logs else "1"
    trainable = tune.with_parameters(_trainable, evaluate=evaluate)
    if resources:
        trainable = tune.with_resources(trainable, resources)
    progress = Progress(n_trials, done, objectives, out)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=remaining,
                                    max_concurrent_trials=max_concurrent, reuse_actors=True, scheduler=scheduler,
                                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=f"{study_name}-{int(time.time())}",
                                  storage_path=str((run_dir / "ray").resolve()), verbose=0, callbacks=[progress]),
    )
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    if not trial_logs:  # Tune's result grid looks for the per-trial logs it was told not to write
        quiet.setLevel(logging.ERROR)
    try:
        tuner.fit()
    except KeyboardInterrupt:
        _on_interrupt(study, out, owner=lease.owner if lease else None)
        raise
    finally:
        quiet.setLevel(level)
    if searcher.exhausted:
        out(searcher.exhausted)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(progress.kinds.items()))
    out(f"finished {progress.done - done} trial(s) this run, {progress.failed} failed"
        + (f" ({kinds})" if kinds else "") + (f", {progress.over_limit} over a limit" if progress.over_limit else "")
        + (f"; {searcher.duplicates} re-proposed architecture(s) answered from the stored trials (not counted)"
           if searcher.duplicates else "")
        + (f"; {searcher.screened} candidate(s) screened out by {screen.metric} (not trained, not counted)"
           if searcher.screened else ""))
    return study


def _on_interrupt(study: optuna.Study, out: Callable[[str], None], *, owner: str | None) -> None:
    """First Ctrl-C: record the running trials as interrupted (:func:`close_interrupted`: re-queued, not counted
    in the budget); from here on a second Ctrl-C ends the process at once."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop_now)
    n = close_interrupted(study, owner=owner)
    out(f"interrupted: {n} running trial(s) recorded as interrupted (re-run first on --resume, not counted in "
        f"the budget); nothing exported")


def _stop_now(signum: int, frame: Any) -> None:
    os._exit(130)


def init_ray(cfg: Config) -> None:
    """Start embedded Ray or join ``ray.address`` (search/cluster.py) and check a trial fits on a node; an
    unreachable cluster or an impossible request raises ConfigError (and stops the Ray started here)."""
    import ray

    started = not ray.is_initialized()
    connect(cfg)
    try:
        check_resources(cfg)
    except ConfigError:
        if started:
            ray.shutdown()
        raise


def search_from_config(cfg: Config, *, run_dir: Path, resume: bool = False,
                       out: Callable[[str], None] = print) -> optuna.Study:
    """Everything ``nas search`` does: validate, set up the run folder, run, export.

    Every refusal (a taken run folder or study, another storage or config on ``--resume``, an unreachable
    storage or cluster, an impossible resource request) raises ConfigError before any trial runs, leaving
    no new run folder and an old one as it was."""
    from .evaluation import load_data

    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists() and not resume:
        raise ConfigError(f"--name: run folder {str(run_dir)!r} already exists; pass --resume to continue it "
                          f"or choose another --name")
    record = read_record(run_dir) if resume and (run_dir / "run.json").exists() else None
    storage_url = cfg.resolved_storage(run_dir)
    if record is not None:
        change = fingerprint_change(record.get("fingerprint") or {}, fingerprint(cfg), run_dir=run_dir)
        if change:
            raise ConfigError(change)
        storage_url = resume_storage(record, storage_url, run_dir=run_dir)
    created = next((p for p in [*reversed(run_dir.parents), run_dir] if not p.exists()), None)  # topmost new folder
    run_dir.mkdir(parents=True, exist_ok=True)
    claim = lease = None
    try:
        # a live driver of this run: refuse; a killed one: stop its leftover Ray processes
        claim = claim_run(run_dir, out=out, field="--resume" if resume else "--name")
        storage = make_storage(storage_url, heartbeat=True,
                               field="NAS_STORAGE_URL" if os.environ.get("NAS_STORAGE_URL") else "storage")
        study, new = _open_study(storage, cfg, run_dir=run_dir, must_exist=record is not None)
        try:
            lease = StudyLease.acquire(study)
            data = load_data(cfg)
            space = SearchSpace(cfg.space, input_size=data.input_size)
            out(f"search space: {space.describe()}")
            init_ray(cfg)
        except ConfigError:
            if new:  # no empty study left in a shared database either
                if lease is not None:
                    lease.release()
                    lease = None
                optuna.delete_study(study_name=cfg.name, storage=storage)
            raise
    except BaseException as exc:
        if lease is not None:
            lease.release()
        if claim is not None:
            claim.release()
        if isinstance(exc, ConfigError) and created is not None:  # a refused run leaves no run folder behind
            shutil.rmtree(created, ignore_errors=True)
        raise
    record_driver(run_dir, session_dir=session_dir())
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    write_record(run_dir, study_name=cfg.name, storage_url=storage_url, cfg=cfg)
    try:
        return _search(cfg, run_dir, storage, space, data, out, lease=lease)
    finally:
        lease.release()
        claim.release()


def _open_study(storage: optuna.storages.BaseStorage, cfg: Config, *, run_dir: Path,
                must_exist: bool) -> tuple[optuna.Study, bool]:
    """The run's study and whether it was created now; a resumed run's study must exist and every stored
    study must have been started with this fingerprint (ConfigError otherwise)."""
    exists = cfg.name in optuna.study.get_all_study_names(storage)
    if must_exist and not exists:
        raise ConfigError(f"--resume: the run's storage holds no study {cfg.name!r} (it was deleted, or the storage "
                          f"is another database); the run cannot be resumed")
    directions = ["maximize" if d == "max" else "minimize" for d in cfg.directions]
    study = optuna.create_study(storage=storage, study_name=cfg.name, directions=directions, load_if_exists=True)
    if exists:
        started = study.user_attrs.get("fingerprint")
        if started is None and isinstance(study.user_attrs.get("config"), dict):  # a run of an older version
            try:
                started = fingerprint(Config.model_validate(study.user_attrs["config"]))
            except ValueError:
                started = None
        change = fingerprint_change(started or {}, fingerprint(cfg), run_dir=run_dir)
        if change:
            raise ConfigError(change)
    return study, not exists


def _search(cfg: Config, run_dir: Path, storage: optuna.storages.BaseStorage, space: SearchSpace, data: Any,
            out: Callable[[str], None], *, lease: StudyLease) -> optuna.Study:
    from .evaluation import ArchEvaluation, Screen
    from .results.export import export_run

    n_prev = len(optuna.study.get_all_study_names(storage)) and _n_trials(storage, cfg.name)
    sampler = make_sampler(cfg.search.sampler, seed=cfg.search.seed + n_prev, n_trials=cfg.search.n_trials)
    threads = max(1, int(cfg.ray.cpus_per_trial))
    resources = {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial}
    evaluate = ArchEvaluation(cfg, threads=threads, cache_dir=run_dir)
    study = run_search(space, evaluate, objectives=cfg.objectives, sampler=sampler,
                       storage=storage, study_name=cfg.name, n_trials=cfg.search.n_trials, run_dir=run_dir,
                       max_concurrent=cfg.search.max_concurrent, resources=resources, out=out,
                       scheduler=make_scheduler(cfg.scheduler.name, cfg.scheduler.options, objectives=cfg.objectives,
                                                modes=cfg.directions, max_t=cfg.proxy.epochs),
                       limits=[(m.name, m.direction, bound) for _, m, bound in given_limits(cfg.constraints)],
                       study_attrs={"config": cfg.model_dump(mode="json"), "fingerprint": fingerprint(cfg),
                                    "input_size": data.input_size, "num_classes": data.num_classes,
                                    "in_chans": data.in_chans}, lease=lease, trial_logs=cfg.ray.trial_logs,
                       screen=Screen.from_config(evaluate))
    export_run(run_dir, storage=storage, out=out)
    return study


def _n_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0
