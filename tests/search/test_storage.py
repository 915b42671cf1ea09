"""Storage: SQLite in the run folder by default; any Optuna RDB URL from the config or ``NAS_STORAGE_URL``.

The PostgreSQL test starts its own server on loopback (initdb into a temp folder, ``pg_ctl start`` on a
free port, as a non-root user when run as root), runs a real search with
``NAS_STORAGE_URL=postgresql+psycopg2://nas:PASSWORD@127.0.0.1:PORT/nas``, checks that the trials are in
Postgres and that the password is written nowhere, then stops the server. It is skipped, with the reason,
only when no PostgreSQL server binaries are installed (.ci/run installs the Debian package).
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from search.config import ConfigError, parse_config
from search.results.export import export_run
from search.resume import public_url
from search.storage import make_storage

PASSWORD = "pg-S3cret-for-nas-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_default_storage_is_sqlite_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    cfg = parse_config({})
    assert cfg.resolved_storage(tmp_path) == f"sqlite:///{(tmp_path / 'study.db').resolve()}"
    cfg = parse_config({"storage": "postgresql+psycopg2://nas@db.example.org:5432/nas"})
    assert cfg.resolved_storage(tmp_path) == "postgresql+psycopg2://nas@db.example.org:5432/nas"
    monkeypatch.setenv("NAS_STORAGE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    assert cfg.resolved_storage(tmp_path) == f"sqlite:///{tmp_path / 'other.db'}"  # the variable wins


def test_passwords_stay_out_of_configs_and_run_json(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="^storage: must not contain a password"):
        parse_config({"storage": f"postgresql+psycopg2://nas:{PASSWORD}@db.example.org/nas"})
    url = f"postgresql+psycopg2://nas:{PASSWORD}@db.example.org/nas"
    monkeypatch.setenv("NAS_STORAGE_URL", url)
    assert public_url(url) == "env:NAS_STORAGE_URL"
    monkeypatch.setenv("NAS_STORAGE_URL", "redis://db.example.org/0")
    with pytest.raises(ConfigError, match="^NAS_STORAGE_URL: must be an Optuna RDB URL"):
        parse_config({}).resolved_storage(tmp_path)


def test_unreachable_database_fails_fast_without_the_password():
    url = f"postgresql+psycopg2://nas:{PASSWORD}@127.0.0.1:{free_port()}/nas"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        make_storage(url, field="NAS_STORAGE_URL")
    assert time.perf_counter() - t0 < 10
    msg = str(info.value)
    assert msg.startswith("NAS_STORAGE_URL: cannot open '127.0.0.1:") and PASSWORD not in msg and "\n" not in msg


# --------------------------------------------------------------------------- a real PostgreSQL server


def _pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _as_user() -> list[str]:
    """Command prefix to run the server as a non-root user (postgres refuses to run as root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", name, "--"]
        return ["su", name, "-s", "/bin/sh", "-c", '"$0" "$@"']  # noqa: P103 - su passes argv through sh
    pytest.skip("running as root and no non-root user (postgres, nobody) exists to run a PostgreSQL server")


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1:<free port>, superuser ``nas`` with a password, db ``nas``."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl); install the Debian package 'postgresql' "
                    "(.ci/run does)")
    prefix = _as_user()
    root = Path(tempfile.mkdtemp(prefix="naspg", dir="/tmp"))
    (root / "pw").write_text(PASSWORD + "\n")
    if prefix:
        user = prefix[2] if prefix[0].endswith("runuser") else prefix[1]
        ent = pwd.getpwnam(user)
        for p in (root, root / "pw"):
            os.chown(p, ent.pw_uid, ent.pw_gid)
    data, port = root / "data", free_port()

    def run(*args: str, timeout: float = 120) -> None:
        proc = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout)
        log = (root / "server.log").read_text()[-2000:] if (root / "server.log").exists() else ""
        assert proc.returncode == 0, f"{args[0]} failed:\n{proc.stdout}\n{proc.stderr}\n{log}"

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "nas", f"--pwfile={root / 'pw'}", "--auth-local=trust",
            "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "90",
            "-o", f"-p {port} -h 127.0.0.1 -k {root} -F", "start")
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="nas", password=PASSWORD, dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE nas")
        con.close()
        yield {"url": f"postgresql+psycopg2://nas:{PASSWORD}@127.0.0.1:{port}/nas", "port": port}
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_search_with_postgres_storage(postgres, tmp_path, monkeypatch, capfd):
    import psycopg2
    import ray

    from search.run import search_from_config

    ray_tmp = tempfile.mkdtemp(prefix="nasp", dir="/tmp")
    cfg = parse_config({"name": "pg", "data": {"name": "digits"},
                        "space": {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0],
                                  "depth": [1, 2], "act": ["relu", "elu"]},
                        "objectives": ["val_acc", "macs"], "proxy": {"epochs": 1, "batch_size": 64, "lr": 0.05},
                        "search": {"sampler": "random", "n_trials": 3, "max_concurrent": 2, "seed": 0},
                        "ray": {"num_cpus": 2, "temp_dir": ray_tmp}})
    monkeypatch.setenv("NAS_STORAGE_URL", postgres["url"])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    said: list[str] = []
    if ray.is_initialized():  # this search must start its own Ray (in ray_tmp)
        ray.shutdown()
    try:
        search_from_config(cfg, run_dir=tmp_path / "results" / "pg", out=said.append)
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    monkeypatch.delenv("NAS_STORAGE_URL")
    printed = capfd.readouterr()
    output = "\n".join(said) + printed.out + printed.err
    run = tmp_path / "results" / "pg"

    # the trials are in Postgres (read with plain SQL), not in a SQLite file
    con = psycopg2.connect(host="127.0.0.1", port=postgres["port"], user="nas", password=PASSWORD, dbname="nas")
    with con, con.cursor() as cur:
        cur.execute("SELECT t.state, count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                    "WHERE s.study_name = 'pg' GROUP BY t.state")
        assert dict(cur.fetchall()) == {"COMPLETE": 3}
    con.close()
    assert not (run / "study.db").exists()
    study = optuna.load_study(study_name="pg", storage=postgres["url"])
    assert all(t.user_attrs["arch_id"] and 0.0 <= t.values[0] <= 1.0 for t in study.get_trials())

    # the password is written nowhere: run.json points at the variable instead
    assert json.loads((run / "run.json").read_text())["storage"] == "env:NAS_STORAGE_URL"
    leaked = [str(p) for p in run.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]
    assert leaked == [] and PASSWORD not in output

    # export re-reads the study from Postgres through the variable, and says so when it is missing
    monkeypatch.setenv("NAS_STORAGE_URL", postgres["url"])
    assert export_run(run, out=lambda s: None)["states"] == {"COMPLETE": 3}
    monkeypatch.delenv("NAS_STORAGE_URL")
    with pytest.raises(ConfigError, match="^NAS_STORAGE_URL: the run used it"):
        export_run(run, out=lambda s: None)

    # --resume in a shell without the variable must not open RUN/study.db and start the study again
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"^NAS_STORAGE_URL: the run is stored in the database this variable "
                                          rf"named \(postgresql\+psycopg2://nas@127.0.0.1:{postgres['port']}/nas\)"):
        search_from_config(cfg, run_dir=run, resume=True, out=said.append)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before and not (run / "study.db").exists()


def test_pickled_storage_has_no_password_and_comes_back_with_the_variable(postgres, monkeypatch):
    """Ray pickles the searcher, storage included, into the run folder (tuner.pkl, searcher-state-*.pkl)."""
    import pickle

    storage = make_storage(postgres["url"])
    blob = pickle.dumps(storage)
    assert PASSWORD.encode() not in blob and b"nas:***@127.0.0.1" in blob
    monkeypatch.setenv("NAS_STORAGE_URL", postgres["url"])
    again = pickle.loads(blob)
    assert again.url == postgres["url"] and again.get_all_studies() is not None


_COMMIT_AND_DIE = """
import os, sys
import optuna
from search.storage import make_storage
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(storage=make_storage(sys.argv[1]), study_name="s")
for i in range(20):
    t = study.ask()
    t.set_user_attr("k", i)
    study.tell(t, float(i))
os.kill(os.getpid(), 9)  # no clean close: the write-ahead log is never checkpointed by this process
"""


def test_sqlite_runs_in_wal_mode_and_keeps_commits_of_a_killed_process(tmp_path):
    """The storage's SQLite file is in write-ahead-log mode with synchronous=NORMAL (read back through the plain
    sqlite3 module, not through our engine), and every commit of a process killed with SIGKILL is there when the
    database is opened again, from a pickled-and-restored storage as Ray does with the searcher."""
    import pickle
    import sqlite3
    import sys

    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    storage = make_storage(url)
    with storage.engine.connect() as conn:  # a pooled connection of our engine: its per-connection setting
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL (FULL is 2)
    storage = pickle.loads(pickle.dumps(storage))
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # a property of the file itself
    proc = subprocess.run([sys.executable, "-c", _COMMIT_AND_DIE, url], env={**os.environ},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert (tmp_path / "study.db-wal").exists()  # the killed process's commits are still in the log
    with sqlite3.connect(db) as con:  # an independent reader replays the log
        assert con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0] == 20
    study = optuna.load_study(study_name="s", storage=make_storage(url))
    assert sorted(t.values[0] for t in study.trials) == [float(i) for i in range(20)]
    assert sorted(t.user_attrs["k"] for t in study.trials) == list(range(20))


@pytest.fixture(params=["sqlite", "postgresql"])
def any_rdb(request, tmp_path):
    """A fresh storage URL on SQLite, and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a.db'}"
    server = request.getfixturevalue("postgres")
    import psycopg2

    name = f"attrs_{tmp_path.name.lower().replace('-', '_')[-40:]}"
    con = psycopg2.connect(host="127.0.0.1", port=server["port"], user="nas", password=PASSWORD, dbname="postgres")
    con.autocommit = True
    con.cursor().execute(f"CREATE DATABASE {name}")
    con.close()
    return server["url"].rsplit("/", 1)[0] + f"/{name}"


def test_user_attrs_of_a_trial_are_set_in_one_transaction(any_rdb):
    """set_user_attrs writes what Trial.set_user_attr and set_trial_system_attr would (read back through Optuna;
    an existing key is overwritten), with one commit and a fixed number of statements (counted by SQLAlchemy's own
    events) instead of one commit and two statements per attribute; a finished trial is refused as Optuna
    refuses it."""
    from sqlalchemy import event

    from search.storage import set_user_attrs

    storage = make_storage(any_rdb)
    study = optuna.create_study(storage=storage, study_name="s")
    commits, statements = [], []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    event.listen(storage.engine, "before_cursor_execute", lambda *a: statements.append(1))
    attrs = {"macs": 1.5e6, "node": "127.0.0.1/abc", "epochs": 3.0, "nested": {"a": [1, 2]}, "x": None}
    system = {"constraints": [0.5, -1.0], "flag": True}
    batched, single = study.ask(), study.ask()
    batched.set_user_attr("epochs", 1.0)  # overwritten below
    single.set_user_attr("epochs", 1.0)
    commits.clear()
    statements.clear()
    set_user_attrs(batched, attrs, system)
    assert len(commits) == 1 and len(statements) <= 4  # read the trial, one upsert per table (+ a savepoint)
    assert batched.user_attrs == attrs  # the trial object sees them at once, as after Trial.set_user_attr
    commits.clear()
    for key, value in attrs.items():
        single.set_user_attr(key, value)
    for key, value in system.items():
        single.storage.set_trial_system_attr(single._trial_id, key, value)
    assert len(commits) == len(attrs) + len(system)
    study.tell(batched, 1.0)
    study.tell(single, 1.0)
    got = {t.number: t for t in optuna.load_study(study_name="s", storage=make_storage(any_rdb)).trials}
    assert got[batched.number].user_attrs == got[single.number].user_attrs == attrs
    assert {k: got[batched.number].system_attrs[k] for k in system} == system
    assert got[batched.number].system_attrs == got[single.number].system_attrs
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(batched, {"late": 1})


def _draws(storage, defer: bool, n: int = 24) -> list[dict]:
    """``n`` trials of configs/quickstart.yaml's space sampled by multivariate TPE with the constant liar, two
    running at a time (each told one trial late), through the search's own define-by-run function."""
    from search import SearchSpace, load_config
    from search.run import DefineByRun

    cfg = load_config("configs/quickstart.yaml")
    space = SearchSpace(cfg.space, input_size=16)
    sampler = optuna.samplers.TPESampler(seed=5, n_startup_trials=6, multivariate=True, constant_liar=True)
    study = optuna.create_study(storage=storage, study_name="draws", directions=["maximize", "minimize"],
                                sampler=sampler)
    run = DefineByRun(space, ["val_acc", "macs"])
    if not defer:  # the same function, each parameter written at once by Optuna
        import search.run as module

        saved = module.deferred_params
        module.deferred_params = lambda trial: __import__("contextlib").nullcontext()
    try:
        running = []
        for i in range(n):
            trial = study.ask()
            run(trial)
            running.append(trial)
            if len(running) == 2:
                done = running.pop(0)
                study.tell(done, [len(done.params) + (i % 5) / 10, float(i % 7)])
        study.tell(running.pop(), [0.5, 1.0])
    finally:
        if not defer:
            module.deferred_params = saved
    return [{"params": t.params, "dists": t.distributions, "attrs": t.user_attrs}
            for t in optuna.load_study(study_name="draws", storage=storage).trials]


def test_deferred_parameters_are_written_as_optuna_writes_them(any_rdb, tmp_path):
    """With the parameters of a proposal written in one transaction (deferred_params), a search draws and stores
    exactly what it draws with Optuna writing each one at once: the same 24 TPE proposals (constant liar, two
    running), parameters, distributions and attributes read back through Optuna from a fresh storage."""
    deferred = _draws(make_storage(any_rdb), defer=True)
    direct = _draws(make_storage(f"sqlite:///{tmp_path / 'direct.db'}"), defer=False)
    assert len(deferred) == 24 and all(d["params"] for d in deferred)
    assert deferred == direct


def test_deferred_parameters_take_one_commit_and_keep_optunas_check(any_rdb):
    """A proposal's parameters and its attributes: one commit (was one per parameter, plus one); a parameter whose
    distribution differs from the one the study holds under that name is refused as Trial.suggest_* refuses it
    (Optuna's ValueError), and nothing of that proposal is written."""
    from sqlalchemy import event

    from search.storage import deferred_params, set_user_attrs

    storage = make_storage(any_rdb)
    study = optuna.create_study(storage=storage, study_name="one", sampler=optuna.samplers.RandomSampler(seed=0))
    commits = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    first = study.ask()
    commits.clear()
    with deferred_params(first):
        values = [first.suggest_categorical(f"p{k}", [1, 2, 3]) for k in range(6)]
        assert first.params == {f"p{k}": v for k, v in enumerate(values)}  # seen at once by the trial
        set_user_attrs(first, {"arch_id": "abc"})
    assert len(commits) == 1
    study.tell(first, 1.0)
    back = optuna.load_study(study_name="one", storage=make_storage(any_rdb)).trials[0]
    assert back.params == first.params and back.user_attrs == {"arch_id": "abc"}
    assert back.distributions["p0"] == optuna.distributions.CategoricalDistribution([1, 2, 3])

    second = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        with deferred_params(second):
            second.suggest_categorical("p1", [1, 2, 3])
            second.suggest_float("p0", 0.0, 1.0)  # p0 is categorical in this study
    again = optuna.load_study(study_name="one", storage=make_storage(any_rdb)).trials[1]
    assert again.params == {} and again.state == optuna.trial.TrialState.RUNNING


def test_tell_stores_what_optunas_tell_stores_without_reading_the_trial_back(tmp_path):
    """search.storage.tell and Optuna's Study.tell leave the same trials (values, states, a pruned trial's last
    intermediate value as its value); ours runs fewer statements (no read-back of the whole trial)."""
    from sqlalchemy import event

    from search.storage import tell

    storage = make_storage(f"sqlite:///{tmp_path / 't.db'}")
    study = optuna.create_study(storage=storage, study_name="t", direction="maximize")
    statements = []
    event.listen(storage.engine, "before_cursor_execute", lambda *a: statements.append(1))
    counts = {}
    ways = (("optuna", lambda t, v, s: study.tell(t, v, state=s)), ("ours", lambda t, v, s: tell(study, t, v, state=s)))
    for who, told in ways:
        for values, state in ((0.9, optuna.trial.TrialState.COMPLETE), (None, optuna.trial.TrialState.FAIL),
                              (None, optuna.trial.TrialState.PRUNED)):
            trial = study.ask()
            trial.suggest_int("x", 0, 3)
            storage.set_trial_intermediate_value(trial._trial_id, 2, 0.25)
            statements.clear()
            told(trial, values, state)
            counts.setdefault(who, []).append(len(statements))
    trials = optuna.load_study(study_name="t", storage=make_storage(f"sqlite:///{tmp_path / 't.db'}")).trials
    strip = [(t.state, t.values, t.intermediate_values) for t in trials]
    assert strip[:3] == strip[3:]
    assert strip[2][1] == [0.25]  # PRUNED: the last intermediate value (as Optuna's own tell stores it)
    assert all(o > u for o, u in zip(counts["optuna"], counts["ours"])), counts


def test_deferred_parameters_of_a_study_made_again_under_the_same_id(tmp_path):
    """A study deleted and created again (SQLite may give it the same id) starts with no parameter distributions:
    the new study's first proposal may use a name the deleted study held with another distribution."""
    from search.storage import deferred_params

    storage = make_storage(f"sqlite:///{tmp_path / 'again.db'}")
    for kind in ("int", "float"):
        study = optuna.create_study(storage=storage, study_name="again")
        trial = study.ask()
        with deferred_params(trial):
            trial.suggest_int("x", 0, 3) if kind == "int" else trial.suggest_float("x", 0.0, 1.0)
        study.tell(trial, 1.0)
        assert optuna.load_study(study_name="again", storage=storage).trials[0].params == trial.params
        optuna.delete_study(study_name="again", storage=storage)


def test_an_intermediate_value_and_attributes_in_one_transaction(any_rdb):
    """set_user_attrs(..., intermediate=(step, value)) stores what Optuna's set_trial_intermediate_value and
    Trial.set_user_attr store (a twin trial written Optuna's way, read back through Optuna), in one commit; a
    step reported again is overwritten, as Optuna overwrites it."""
    from sqlalchemy import event

    from search.storage import set_user_attrs

    storage = make_storage(any_rdb)
    study = optuna.create_study(storage=storage, study_name="iv", directions=["maximize", "minimize"])
    ours, theirs = study.ask(), study.ask()
    commits = []
    event.listen(storage.engine, "commit", lambda conn: commits.append(1))
    for step, value in ((1, 0.25), (2, 0.5), (2, 0.625)):
        commits.clear()
        set_user_attrs(ours, {"epochs_seen": step}, intermediate=(step, value))
        assert len(commits) == 1
        theirs.storage.set_trial_intermediate_value(theirs._trial_id, step, value)
        theirs.set_user_attr("epochs_seen", step)
    got = optuna.load_study(study_name="iv", storage=make_storage(any_rdb)).trials
    assert got[0].intermediate_values == got[1].intermediate_values == {1: 0.25, 2: 0.625}
    assert got[0].user_attrs == got[1].user_attrs == {"epochs_seen": 2}
