"""Optuna storage: RDB URLs checked before anything starts, and a storage whose pickled form has no password.

SQLite is the default (``RUN/study.db``); PostgreSQL or MySQL come from ``storage:`` in the config or
the ``NAS_STORAGE_URL`` environment variable (the only place a password may live).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Any, Iterator, Sequence

import optuna

from .errors import ConfigError

Param = tuple[str, float, Any]
"""A sampled parameter as Optuna stores it: name, value in the distribution's internal form, distribution."""


def check_storage_url(url: str) -> Any:
    """Parse an Optuna RDB URL (SQLAlchemy form) and check its driver is installed; ValueError says what is wrong."""
    from sqlalchemy.engine import make_url

    if not any(url.startswith(p) for p in ("sqlite:///", "postgresql", "mysql")):
        raise ValueError("must be an Optuna RDB URL (sqlite:///path.db, postgresql://..., mysql://...)")
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except Exception as exc:
        raise ValueError(f"not a valid database URL ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    if parsed.get_backend_name() == "sqlite" and not parsed.database:
        raise ValueError("sqlite needs a file: sqlite:///path/to/study.db (an in-memory database would be lost)")
    if parsed.get_backend_name() != "sqlite" and not parsed.database:
        raise ValueError(f"names no database: add /DBNAME, e.g. {parsed.get_backend_name()}://user@host:5432/nas")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ValueError(f"port {parsed.port} is out of range")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        backend = parsed.get_backend_name()
        hint = {"postgresql": "postgresql+psycopg2://... (pip install psycopg2-binary)",
                "mysql": "mysql+pymysql://... (pip install pymysql)"}.get(backend, "another driver")
        raise ValueError(f"the {parsed.get_driver_name()!r} driver for {backend} is not installed "
                         f"({exc.name or exc}); use {hint}") from None
    return parsed


def _sqlite_pragmas(engine: Any) -> None:
    """Every new connection of a SQLite ``engine`` runs in write-ahead-log mode with ``synchronous=NORMAL``.

    SQLite's default (rollback journal, ``synchronous=FULL``) syncs the disk on every commit, and a trial makes
    ~25 commits (parameters, attributes, heartbeat, tell): ~8 ms each here, most of a table look-up trial's cost.
    In WAL mode with ``NORMAL`` a commit is ~0.1 ms and still survives the process being killed (the log is
    replayed at the next open); only an operating-system crash or power loss can drop the last commits, never
    corrupt the file (https://www.sqlite.org/wal.html). The ``study.db-wal``/``-shm`` files beside the database
    belong to it while a process has it open (copy the database with ``sqlite3 study.db .backup``, not ``cp``,
    while a search runs); WAL needs a local file system, as SQLite's locking does anyway (use PostgreSQL for a
    database shared over the network)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class _RDBStorage(optuna.storages.RDBStorage):
    """An RDB storage whose pickled form has no password: Ray pickles the searcher (and so the storage) into
    the run folder. Unpickled in a process whose ``NAS_STORAGE_URL`` matches, it gets the password back.
    A SQLite one runs in write-ahead-log mode (:func:`_sqlite_pragmas`)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._tune_engine()

    def _tune_engine(self) -> None:
        if self.engine.dialect.name == "sqlite":
            _sqlite_pragmas(self.engine)
            self.engine.dispose()  # the connections Optuna opened to create the tables: reopened with the pragmas

    def set_trial_attrs(self, trial_id: int, attrs: dict[str, Any], system: dict[str, Any] | None = None,
                        params: Sequence[Param] = (), intermediate: tuple[int, float] | None = None) -> None:
        """Every item of ``attrs`` as a user attribute (and of ``system`` as a system attribute) of ``trial_id``, in
        one transaction: Optuna's ``set_trial_user_attr`` commits each one and reads the trial again for each.
        The same check that the trial is still updatable, once; then on SQLite and PostgreSQL one multi-row upsert
        per table (Optuna's own upsert statement, with all rows; SQLite from 3.24, as Optuna), elsewhere Optuna's
        per-attribute statement.

        ``params``: parameters sampled for the trial (:func:`deferred_params`), written first in the same
        transaction by Optuna's own statement and check (a distribution incompatible with the one the study
        already holds under that name raises ValueError, as ``Trial.suggest_*`` does, and nothing is written).
        ``intermediate``: ``(step, value)``, an intermediate value written in the same transaction by Optuna's own
        statement (what ``set_trial_intermediate_value`` writes)."""
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        groups = [(models.TrialUserAttributeModel, attrs), (models.TrialSystemAttributeModel, system or {})]
        with _create_scoped_session(self.scoped_session, True) as session:
            if params:
                self._add_params(session, trial_id, params)
            if intermediate is not None:
                self._set_trial_intermediate_value_without_commit(session, trial_id, *intermediate)
            if not attrs and not system:
                return
            name = self.engine.name
            if name not in ("sqlite", "postgresql") or (name == "sqlite" and sqlite3.sqlite_version_info < (3, 24)):
                for model, items in groups:
                    for key, value in items.items():
                        self._set_trial_attr_without_commit(session, model, trial_id, key, value)
                return
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            self.check_trial_is_updatable(trial_id, trial.state)
            if name == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            for model, items in groups:
                if not items:
                    continue
                stmt = insert(model).values([{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
                                             for key, value in items.items()])
                session.execute(stmt.on_conflict_do_update(index_elements=[model.trial_id, model.key],
                                                           set_={"value_json": stmt.excluded.value_json}))

    def _add_params(self, session: Any, trial_id: int, params: Sequence[Param]) -> None:
        """What Optuna's ``_set_trial_param_without_commit`` does for each parameter, for all of them at once: the
        trial read and checked updatable once (Optuna: once per parameter), each distribution checked against the
        one the study already holds under that name (Optuna's check; the study's first row with that name, read
        once per name and process), and the rows inserted by one ``executemany``."""
        import sqlalchemy
        from optuna import distributions as dists
        from optuna.storages._rdb import models

        trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
        self.check_trial_is_updatable(trial_id, trial.state)
        known = self.__dict__.setdefault("_param_distributions", {})  # (study id, name) -> a stored distribution
        rows = []
        for name, value, distribution in params:
            key = (trial.study_id, name)
            if key not in known:
                first = (session.query(models.TrialParamModel).join(models.TrialModel)
                         .filter(models.TrialModel.study_id == trial.study_id)
                         .filter(models.TrialParamModel.param_name == name).first())
                if first is not None:
                    known[key] = dists.json_to_distribution(first.distribution_json)
            if key in known:
                dists.check_distribution_compatibility(known[key], distribution)
            rows.append({"trial_id": trial_id, "param_name": name, "param_value": value,
                         "distribution_json": dists.distribution_to_json(distribution)})
        session.execute(sqlalchemy.insert(models.TrialParamModel), rows)  # one executemany
        known.update({(trial.study_id, name): d for name, _, d in params if (trial.study_id, name) not in known})

    def delete_study(self, study_id: int) -> None:
        super().delete_study(study_id)
        known = self.__dict__.get("_param_distributions", {})  # a new study may be given the same id
        for key in [k for k in known if k[0] == study_id]:
            del known[key]

    def __getstate__(self) -> dict[str, Any]:
        state = {**super().__getstate__(), "url": _masked(self.url)}
        state.pop("_param_distributions", None)  # a cache of this process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        env = os.environ.get("NAS_STORAGE_URL")
        super().__setstate__({**state, "url": env} if env and _masked(env) == state["url"] else state)
        self._tune_engine()


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def bare_url(url: str) -> str:
    """``url`` without its password (what may be written to a run folder and compared across shells)."""
    from sqlalchemy.engine import make_url

    return make_url(url)._replace(password=None).render_as_string(hide_password=False)  # URL is a NamedTuple


CONNECT_TIMEOUT_S = 5
"""Seconds a database server may take to answer a new connection (libpq's ``connect_timeout``)."""


def make_storage(url: str, *, field: str = "storage", heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for ``url``; a bad URL or unreachable server raises ConfigError (within
    :data:`CONNECT_TIMEOUT_S` of connecting).

    ``heartbeat``: keep per-trial heartbeats (``heartbeat_interval``/``grace_period`` of search/lease.py), as
    the search driver does; readers (export, report) leave it off."""
    from .lease import GRACE_S, HEARTBEAT_S, quiet_heartbeat_warnings

    engine = None if url.startswith("sqlite") else {"pool_pre_ping": True,
                                                    "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    beat: dict[str, Any] = {}
    if heartbeat:
        quiet_heartbeat_warnings()
        beat = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
    try:
        return _RDBStorage(url, engine_kwargs=engine, **beat)
    except Exception as exc:  # sqlalchemy raises many types; all mean "cannot open this storage"
        safe = url.split("@")[-1] if "@" in url else url
        detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")[:300]
        raise ConfigError(f"{field}: cannot open {safe!r}: {type(exc).__name__}: {detail}") from None


def set_user_attrs(trial: Any, attrs: dict[str, Any], system: dict[str, Any] | None = None, *,
                   intermediate: tuple[int, float] | None = None) -> None:
    """``trial.set_user_attr`` for every item of ``attrs`` (and ``trial.storage.set_trial_system_attr`` for every
    item of ``system``; ``trial.storage.set_trial_intermediate_value(trial._trial_id, *intermediate)``), in one
    transaction when the storage is ours (:meth:`_RDBStorage.set_trial_attrs`; behind Optuna's cache as
    ``_backend``), one by one otherwise. Inside :func:`deferred_params` for ``trial``, the parameters sampled so
    far go in the same transaction."""
    trial = getattr(trial, "ot_trial", trial)  # Ray's OptunaSearch hands define-by-run functions a wrapper
    pending = getattr(trial.storage, "pending", None) if isinstance(trial.storage, _DeferParams) else None
    if not attrs and not system and not pending and intermediate is None:
        return
    backend = getattr(trial.storage, "_backend", trial.storage)
    if isinstance(backend, _RDBStorage):
        backend.set_trial_attrs(trial._trial_id, attrs, system, params=pending or (), intermediate=intermediate)
        if pending:
            pending.clear()
        cached = getattr(trial, "_cached_frozen_trial", None)  # what Trial.user_attrs reads (Optuna >= 4.2)
        if cached is not None:
            cached.user_attrs.update(attrs)
            cached.system_attrs.update(system or {})
        return
    if intermediate is not None:
        trial.storage.set_trial_intermediate_value(trial._trial_id, *intermediate)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    for key, value in (system or {}).items():
        trial.storage.set_trial_system_attr(trial._trial_id, key, value)


class _DeferParams:
    """A trial's view of its storage while :func:`deferred_params` holds its parameter writes: everything goes to
    the storage, except ``set_trial_param`` for that trial, kept in :attr:`pending`."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._storage, self._trial_id = storage, trial_id
        self.pending: list[Param] = []

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: Any) -> None:
        if trial_id != self._trial_id:
            self._storage.set_trial_param(trial_id, name, value, distribution)
            return
        self.pending.append((name, value, distribution))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


@contextlib.contextmanager
def deferred_params(trial: Any) -> Iterator[None]:
    """Within the block, the parameters ``trial.suggest_*`` samples are written with the next
    :func:`set_user_attrs` on ``trial`` (or at the end of the block), in one transaction, instead of one
    transaction each (Optuna's ``Trial._suggest`` writes each at once: a search trial's six parameters were six
    commits and six reads of the trial). The trial object sees each value at once as usual; other trials are
    not affected (only this trial object's ``storage`` is wrapped). Only for our storage
    (:class:`_RDBStorage`); any other storage is left as it is. Samplers do not read the trial being sampled back
    from the storage (TPE's constant liar leaves it out), so they draw the same values. An exception in the block
    leaves the parameters still pending unwritten (Optuna would have written those sampled before it)."""
    trial = getattr(trial, "ot_trial", trial)
    storage = trial.storage
    if not isinstance(getattr(storage, "_backend", storage), _RDBStorage):
        yield
        return
    view = _DeferParams(storage, trial._trial_id)
    trial.storage = view
    try:
        yield
        if view.pending:
            set_user_attrs(trial, {})
    finally:  # an error in the block (the search stops) leaves what is still pending unwritten
        trial.storage = storage


def tell(study: optuna.Study, trial: Any, values: float | Sequence[float] | None = None, *,
         state: optuna.trial.TrialState | None = None) -> None:
    """``study.tell(trial, values, state=state)`` without its return value: Optuna's ``tell`` checks and stores the
    outcome (its ``_tell_with_warning``, called here) and then reads the whole trial back and deep-copies it to
    return it — one more read of five tables per trial, which the searcher never uses. Optuna's public ``tell``
    when that function is not there (another Optuna version)."""
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:  # pragma: no cover - Optuna moved it
        study.tell(trial, values, state=state)
        return
    _tell_with_warning(study=study, trial=trial, value_or_values=values, state=state)
