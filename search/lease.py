"""One driver per study: a lease on the study, heartbeats of the driver's trials, and which RUNNING trials are
abandoned.

A driver takes the study's lease (the study user attribute ``driver``: who, and when it last beat) before
it starts anything, and refuses with one line while another driver's lease is fresh. While it runs, a
thread renews the lease and records Optuna's per-trial heartbeat (``RDBStorage(heartbeat_interval=...,
grace_period=...)``; Optuna records it only inside ``study.optimize``, which Ray Tune does not use) for the
RUNNING trials the driver owns (user attribute ``driver``, set when the trial is sampled).

A RUNNING trial is *abandoned*, and :func:`search.run.close_interrupted` closes it, when it has no owner
(sampled by an older version, or killed in the instant between Optuna's ``ask`` and the owner being
recorded), when its owner is a driver on this machine that no longer runs (pid gone, or reused by another
process), or when its heartbeat is older than the grace period (Optuna's stale rule, by the database's
clock). A live driver's trials are never touched.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from .cluster import _alive, _start_ticks
from .errors import ConfigError

log = logging.getLogger("nas.search")

HEARTBEAT_S = 10
"""Seconds between a driver's heartbeats (lease and trials)."""
GRACE_S = 60
"""Seconds without a heartbeat after which a driver (and its RUNNING trials) counts as gone."""
LEASE_ATTR = "driver"
"""Study user attribute holding the lease; trial user attribute naming the trial's driver."""


def storage_handle(study: optuna.Study, trial: Any = None) -> tuple[Any, int, int | None]:
    """``(storage, study_id, trial_id)`` behind public Optuna objects (``trial``: a Trial or FrozenTrial).

    Optuna has no public API to record a trial's heartbeat outside ``study.optimize``, to list stale trials,
    or to set attributes on a trial the caller did not ask for, so this is the one place that reaches
    ``study._storage``, ``study._study_id`` and ``trial._trial_id``."""
    return study._storage, study._study_id, (None if trial is None else trial._trial_id)


def heartbeat_enabled(storage: Any) -> bool:
    get = getattr(storage, "get_heartbeat_interval", None)
    return get is not None and get() is not None


def driver_id(pid: int | None = None) -> str:
    """``host:pid:start-ticks`` of this process (or ``pid`` on this host): unique even when a pid is reused."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def known_dead(owner: str) -> bool:
    """True when ``owner`` (a :func:`driver_id`) names a process on this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not _alive(int(pid)) or str(_start_ticks(int(pid))) != ticks


def abandoned_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials that no live driver owns (the rule in this module's docstring)."""
    storage, study_id, _ = storage_handle(study)
    stale = set(storage._get_stale_trial_ids(study_id)) if heartbeat_enabled(storage) else set()
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(LEASE_ATTR)
        if not isinstance(owner, str) or known_dead(owner) or storage_handle(study, t)[2] in stale:
            out.append(t)
    return out


def record_trial_heartbeat(study: optuna.Study, trial: Any) -> None:
    """Record ``trial``'s heartbeat now (when the storage keeps heartbeats)."""
    storage, _, trial_id = storage_handle(study, trial)
    if heartbeat_enabled(storage):
        storage.record_heartbeat(trial_id)


class StudyLease:
    """This driver's lease on a study, renewed (with its trials' heartbeats) by a thread until :meth:`release`.

    ``acquire`` raises :class:`ConfigError` (``name: ...``) while another driver holds a fresh lease. Two
    drivers that start within the same instant can both take it (Optuna has no compare-and-set); even then
    neither closes the other's trials, which keep beating."""

    def __init__(self, study: optuna.Study, *, interval_s: float = HEARTBEAT_S, grace_s: float = GRACE_S) -> None:
        self.study, self.interval_s, self.grace_s = study, float(interval_s), float(grace_s)
        self.owner = driver_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def acquire(cls, study: optuna.Study, **kwargs: Any) -> StudyLease:
        lease = cls(study, **kwargs)
        held = study.user_attrs.get(LEASE_ATTR)
        if isinstance(held, dict) and isinstance(held.get("owner"), str) and held["owner"] != lease.owner:
            age = time.time() - float(held.get("beat", 0))
            if age < lease.grace_s and not known_dead(held["owner"]):
                host, _, rest = held["owner"].partition(":")
                raise ConfigError(f"name: study {study.study_name!r} is being searched by another driver (pid "
                                  f"{rest.partition(':')[0]} on {host}, heartbeat {max(age, 0):.0f} s ago); one "
                                  f"driver per study: stop it, or if it died wait {lease.grace_s - age:.0f} s")
        lease._beat()
        lease._thread = threading.Thread(target=lease._run, name="nas-heartbeat", daemon=True)
        lease._thread.start()
        return lease

    def _beat(self) -> None:
        self.study.set_user_attr(LEASE_ATTR, {"owner": self.owner, "beat": time.time()})
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get(LEASE_ATTR) == self.owner:
                record_trial_heartbeat(self.study, t)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except Exception as exc:  # a database hiccup: the next beat retries; a long outage ends the lease
                log.warning("heartbeat failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:200])

    def release(self) -> None:
        """Stop beating and give the lease up (so the next driver need not wait for the grace period)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 30)
        try:
            if (self.study.user_attrs.get(LEASE_ATTR) or {}).get("owner") == self.owner:
                self.study.set_user_attr(LEASE_ATTR, None)
        except Exception:  # the storage went away: the lease expires by itself
            pass


def quiet_heartbeat_warnings() -> None:
    """Optuna warns that heartbeats are experimental and meant for ``study.optimize``; here they are used
    deliberately outside it (see this module's docstring)."""
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    warnings.filterwarnings("ignore", message=r"Argument ``(heartbeat_interval|grace_period)`` is an experimental")
