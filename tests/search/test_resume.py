"""Resume after a crash of the driver: `kill -9` mid-search, then `nas search CONFIG --resume` finishes the
budget with no finished trial lost or re-run, the interrupted trial closed as FAIL (not counted in the
budget) and its architecture re-queued, and the killed driver's leftover Ray processes stopped."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml

from search.cluster import DRIVER_FILE, _start_ticks, claim_run, kill_processes, processes_using
from search.config import ConfigError
from search.run import budget_used, close_interrupted

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- no Ray


def test_interrupted_trials_fail_are_requeued_and_not_counted(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="r",
                                directions=["maximize", "minimize"])
    done = study.ask()
    done.suggest_categorical("act", ["relu", "elu"])
    study.tell(done, [0.5, 1.0])
    mid_training = study.ask()  # sampled, then the driver died while it trained
    params = {"act": mid_training.suggest_categorical("act", ["relu", "elu"]),
              "width_mult": mid_training.suggest_categorical("width_mult", [0.5, 1.0])}
    mid_training.set_user_attr("arch_id", "abc123")
    mid_sampling = study.ask()  # the driver died while this one was being sampled
    mid_sampling.suggest_categorical("act", ["relu", "elu"])
    assert budget_used(study) == 1

    assert close_interrupted(study) == 2
    trials = study.get_trials()
    for t in (trials[1], trials[2]):
        assert t.state.name == "FAIL" and t.user_attrs["interrupted"] is True
        assert t.user_attrs["fail_reason"].startswith("interrupted")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].user_attrs["requeued_from"] == 1
    assert waiting[0].system_attrs["fixed_params"] == params
    assert budget_used(study) == 1  # interrupted trials do not use the budget
    assert close_interrupted(study) == 0  # idempotent; the re-queued WAITING trial is left for the sampler
    assert study.ask().params == {}  # asking pops the re-queued trial first ...
    assert study.get_trials()[-1].user_attrs["requeued_from"] == 1  # ... which carries its origin


def _holder(path: Path) -> subprocess.Popen:
    """A process that keeps a file under ``path`` open (as Ray's agents keep their session's logs)."""
    return subprocess.Popen([sys.executable, "-c", f"import time; f = open({str(path / 'agent.log')!r}, 'w'); "
                                                   f"print('ready', flush=True); time.sleep(120)"],
                            stdout=subprocess.PIPE, text=True)


def test_claim_run_refuses_a_live_driver_and_cleans_after_a_dead_one(tmp_path):
    import socket

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        rec = {"pid": live.pid, "start_ticks": _start_ticks(live.pid), "host": socket.gethostname(),
               "session_dir": None}
        (tmp_path / DRIVER_FILE).write_text(json.dumps(rec))
        with pytest.raises(ConfigError, match=f"being searched by process {live.pid}"):
            claim_run(tmp_path, out=lambda s: None)
        rec["start_ticks"] += 1  # same pid, another process (pid reuse): not our driver
        (tmp_path / DRIVER_FILE).write_text(json.dumps(rec))
        claim = claim_run(tmp_path, out=lambda s: None)
        assert json.loads((tmp_path / DRIVER_FILE).read_text())["pid"] == os.getpid()  # the record is now ours
        claim.release()
        assert not (tmp_path / DRIVER_FILE).exists()
    finally:
        live.kill()
        live.wait()

    root = Path(tempfile.mkdtemp(prefix="nass", dir="/tmp"))
    session = root / "session_2026-01-01_00-00-00_000000_1"  # the layout of a Ray session folder
    (session / "logs").mkdir(parents=True)
    holder = _holder(session)
    try:
        assert holder.stdout.readline().strip() == "ready"
        assert processes_using(str(session)) == [holder.pid]
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / DRIVER_FILE).write_text(json.dumps({"pid": dead.pid, "start_ticks": 1, "host": socket.gethostname(),
                                                        "session_dir": str(session)}))
        said: list[str] = []
        claim_run(tmp_path, out=said.append).release()
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert said == [f"stopped 1 leftover Ray process(es) of the interrupted driver (pid {dead.pid})"]
        assert not (tmp_path / DRIVER_FILE).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
        shutil.rmtree(root, ignore_errors=True)


def test_claim_run_never_sweeps_a_folder_that_is_not_a_ray_session(tmp_path):
    import socket

    holder = _holder(tmp_path)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for bad in ("/", str(tmp_path), "relative/session_x", None):
            (tmp_path / DRIVER_FILE).write_text(json.dumps({"pid": 1 << 22, "host": socket.gethostname(),
                                                            "session_dir": bad}))
            claim_run(tmp_path, out=lambda s: None).release()
            assert holder.poll() is None, f"session_dir {bad!r} swept a process"
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- kill -9 and resume


def _trial_table(db: Path) -> list[tuple[int, str, str | None]]:
    """(number, state, arch_id) of every trial, read straight from Optuna's SQLite tables."""
    con = sqlite3.connect(db, timeout=10)
    try:
        return con.execute("SELECT t.number, t.state, (SELECT a.value_json FROM trial_user_attributes a "
                           "WHERE a.trial_id = t.trial_id AND a.key = 'arch_id') FROM trials t "
                           "ORDER BY t.number").fetchall()
    finally:
        con.close()


def _wait_for_training(proc: subprocess.Popen, db: Path, *, finished: int, timeout: float) -> None:
    """Poll the storage until ``finished`` trials are COMPLETE or PRUNED and a sampled one is RUNNING (training)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the search ended before it could be interrupted"
        try:
            rows = _trial_table(db) if db.exists() else []
        except sqlite3.OperationalError:  # the table is not created yet, or locked for a moment
            rows = []
        if sum(s in ("COMPLETE", "PRUNED") for _, s, _ in rows) >= finished and \
                any(s == "RUNNING" and a for _, s, a in rows):
            return
        time.sleep(0.2)
    raise AssertionError(f"no RUNNING trial after {finished} finished within {timeout} s")


SPACE = {"strides": [1, 2], "base_widths": [8, 16], "width_mult": [0.5, 1.0], "depth": [1, 2], "order": ["pre", "post"],
         "act": ["relu", "elu"]}
FAST = {"proxy": {"epochs": 2, "batch_size": 64, "lr": 0.05}, "budget": 4, "finished": 1,
        "scheduler": {"name": "mo_asha", "grace_period": 1, "reduction_factor": 2}}
LONG = {"proxy": {"epochs": 3, "batch_size": 64, "lr": 0.05}, "budget": 8, "finished": 4,
        "scheduler": {"name": "mo_asha", "grace_period": 1, "reduction_factor": 2}}


def _config(tmp_path: Path, ray_tmp: str, *, name: str, proxy: dict, budget: int, scheduler: dict,
            concurrent: int = 1) -> tuple[list[str], Path]:
    """The command line of a real search of ``budget`` trials (digits, MO-ASHA) and its run folder."""
    cfg = {"name": name, "data": {"name": "digits"}, "space": SPACE, "objectives": ["val_acc", "macs"],
           "proxy": proxy, "scheduler": scheduler,
           "search": {"sampler": "tpe", "n_trials": budget, "max_concurrent": concurrent, "seed": 0},
           "ray": {"num_cpus": 2, "temp_dir": ray_tmp}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    results = tmp_path / "results"
    return [sys.executable, "-m", "search.cli", "search", str(path), "--results", str(results)], results / name


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("NAS_STORAGE_URL", "RAY_ADDRESS")}


@pytest.fixture
def ray_tmp():
    path = tempfile.mkdtemp(prefix="nasr", dir="/tmp")  # short: Ray's socket paths are length-limited
    yield path
    kill_processes(processes_using(path))  # never leave a Ray process of this test behind
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("size", [pytest.param(FAST, id="fast"), pytest.param(LONG, id="long", marks=pytest.mark.slow)])
def test_kill_9_mid_search_then_resume_finishes_the_budget(tmp_path, ray_tmp, size):
    budget, k = size["budget"], size["finished"]
    cmd, run = _config(tmp_path, ray_tmp, name="crash", proxy=size["proxy"], budget=budget,
                       scheduler=size["scheduler"])
    db, env = run / "study.db", _env()
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_training(first, db, finished=k, timeout=400)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    session = json.loads((run / DRIVER_FILE).read_text())["session_dir"]
    assert session.startswith(ray_tmp)
    leftovers = processes_using(session)  # Ray's agents (and maybe the trial's worker) outlive a killed driver
    study = optuna.load_study(study_name="crash", storage=f"sqlite:///{db}")
    before = {t.number: t for t in study.get_trials() if t.state.name in ("COMPLETE", "PRUNED")}
    running = [t for t in study.get_trials() if t.state.name == "RUNNING"]
    assert len(before) >= k and len(running) == 1 and running[0].user_attrs.get("arch_id")
    lost = running[0]
    reports = sum(len(t.user_attrs.get("epoch_objectives", [])) for t in before.values())
    assert reports >= len(before)  # every finished trial stored its per-epoch objectives

    proc = subprocess.run([*cmd, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "marked 1 interrupted trial(s) FAIL" in proc.stdout
    assert f"scheduler: replayed {reports} per-epoch report(s) of the stored trials into its rungs" in proc.stdout
    if leftovers:
        assert "leftover Ray process(es) of the interrupted driver" in proc.stdout, proc.stdout
    assert processes_using(session) == []  # the killed driver's Ray processes are gone
    assert not (run / DRIVER_FILE).exists()  # the resumed driver finished and released the run

    trials = optuna.load_study(study_name="crash", storage=f"sqlite:///{db}").get_trials()
    assert all(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in trials)  # nothing left RUNNING or WAITING
    assert sum(not t.user_attrs.get("interrupted") and "cached_from" not in t.user_attrs for t in trials) == budget
    closed = trials[lost.number]
    assert closed.state.name == "FAIL" and closed.user_attrs["interrupted"] is True
    assert closed.user_attrs["fail_reason"] == "interrupted: the search driver stopped"
    for n, t in before.items():  # the finished trials are untouched
        assert (trials[n].state, trials[n].values, trials[n].datetime_complete, trials[n].params) == \
               (t.state, t.values, t.datetime_complete, t.params)
    retry = [t for t in trials if t.user_attrs.get("requeued_from") == lost.number]
    assert len(retry) == 1 and retry[0].params == lost.params
    assert retry[0].user_attrs["arch_id"] == lost.user_attrs["arch_id"]
    assert retry[0].state.name in ("COMPLETE", "PRUNED")
    old_archs = {t.user_attrs["arch_id"] for t in before.values() if t.state.name == "COMPLETE"}
    for t in trials[lost.number + 1:]:  # no finished architecture was trained again: the cache answered
        if t.user_attrs.get("arch_id") in old_archs:
            assert t.user_attrs.get("cached_from") is not None, t.user_attrs

    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert [(int(r["number"]), r["state"], r["arch_id"]) for r in rows] == \
           [(t.number, t.state.name, t.user_attrs.get("arch_id", "")) for t in trials]


def test_ctrl_c_records_running_trials_as_interrupted_exports_nothing_and_exits_130(tmp_path, ray_tmp):
    """A real SIGINT to a real `nas search` (two trials at a time): exit 130 with the resume command, the running
    trials FAIL as interrupted and re-queued (not counted in the budget), no export; a second SIGINT while the
    driver shuts down ends it at once."""
    cmd, run = _config(tmp_path, ray_tmp, name="ctrlc", budget=6, concurrent=2, **{k: FAST[k] for k in
                                                                                   ("proxy", "scheduler")})
    db = run / "study.db"
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=fo, stderr=fe)
        try:
            _wait_for_training(proc, db, finished=1, timeout=400)
            proc.send_signal(signal.SIGINT)
            deadline = time.time() + 120
            while "resume with" not in err.read_text() and proc.poll() is None and time.time() < deadline:
                time.sleep(0.05)
            t0 = time.time()
            proc.send_signal(signal.SIGINT)  # the second Ctrl-C, while Ray shuts down
            rc = proc.wait(timeout=60)
            second = time.time() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stdout, stderr = out.read_text(), err.read_text()
    assert rc == 130, stdout + stderr
    resume = [ln for ln in stderr.splitlines() if "resume with" in ln]
    assert resume == [f"nas: interrupted; resume with: nas search {cmd[4]} --results {cmd[6]} --resume"], stderr
    assert second < 2.0, f"the second Ctrl-C took {second:.1f} s to end the driver"
    trials = optuna.load_study(study_name="ctrlc", storage=f"sqlite:///{db}").get_trials()
    closed = [t for t in trials if t.user_attrs.get("interrupted")]
    assert closed and all(t.state.name == "FAIL" for t in closed)
    assert f"interrupted: {len(closed)} running trial(s) recorded as interrupted" in stdout
    assert not [t for t in trials if t.state.name == "RUNNING"]
    requeued = {t.user_attrs["requeued_from"] for t in trials if t.state.name == "WAITING"}
    assert requeued == {t.number for t in closed if "arch_id" in t.user_attrs}
    assert not (run / "summary.json").exists() and not (run / "trials.csv").exists()  # nothing exported
    assert budget_used(optuna.load_study(study_name="ctrlc", storage=f"sqlite:///{db}")) == \
        sum(t.state.name in ("COMPLETE", "PRUNED", "FAIL") and not t.user_attrs.get("interrupted")
            and "cached_from" not in t.user_attrs for t in trials)
