"""The search driver loses nothing and says the truth: a second driver never fails a live driver's trials (heartbeats,
a lease on the study), a run folder is claimed atomically, a request no node can place stops at once, a failure
at run time exits 1 with its traceback in RUN/error.log, and the latency gate's locks live in a private folder."""
from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from search.cli import main
from search.cluster import claim_run
from search.config import ConfigError, parse_config
from search.lease import LEASE_ATTR, StudyLease, driver_id, quiet_heartbeat_warnings
from search.run import budget_used, close_interrupted

ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _running(study: optuna.Study, owner: str | None) -> int:
    trial = study.ask()
    trial.suggest_categorical("act", ["relu", "elu"])
    trial.set_user_attr("arch_id", f"a{trial.number}")
    if owner is not None:
        trial.set_user_attr(LEASE_ATTR, owner)
    study._storage.record_heartbeat(trial._trial_id)
    return trial.number


def test_only_abandoned_trials_are_closed(tmp_path):
    """Live owner with a fresh heartbeat: kept (here, or on another host). Owner on this host that died: closed at
    once. Heartbeat older than the grace period (Optuna's rule, 1 s here): closed. No owner: closed."""
    quiet_heartbeat_warnings()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"])
    stale = _running(study, "elsewhere:1:1")
    time.sleep(2.5)  # older than the grace period
    live_here, live_there = _running(study, driver_id()), _running(study, "elsewhere:2:2")
    dead = _running(study, driver_id(_dead_pid()))
    legacy = _running(study, None)
    assert close_interrupted(study) == 3
    state = {t.number: t.state for t in study.get_trials()}
    assert state[live_here] == state[live_there] == TrialState.RUNNING
    assert state[stale] == state[dead] == state[legacy] == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs["requeued_from"] for t in waiting) == sorted([stale, dead, legacy])
    assert budget_used(study) == 0


def test_a_second_driver_is_refused_while_the_lease_is_fresh(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="s")
    study.set_user_attr(LEASE_ATTR, {"owner": "elsewhere:7:7", "beat": time.time() - 5})
    with pytest.raises(ConfigError, match=r"^name: study 's' is being searched by another driver \(pid 7 on "
                                          r"elsewhere, heartbeat 5 s ago\); one driver per study"):
        StudyLease.acquire(study, grace_s=60)
    study.set_user_attr(LEASE_ATTR, {"owner": "elsewhere:7:7", "beat": time.time() - 61})  # it stopped beating
    StudyLease.acquire(study, grace_s=60).release()
    study.set_user_attr(LEASE_ATTR, {"owner": driver_id(_dead_pid()), "beat": time.time()})  # died here just now
    lease = StudyLease.acquire(study, grace_s=60, interval_s=0.2)
    try:
        assert study.user_attrs[LEASE_ATTR]["owner"] == driver_id()
        first = study.user_attrs[LEASE_ATTR]["beat"]
        time.sleep(0.6)
        assert study.user_attrs[LEASE_ATTR]["beat"] > first  # the thread renews it
    finally:
        lease.release()
    assert study.user_attrs[LEASE_ATTR] is None  # given up: the next driver need not wait


def test_a_second_nas_search_on_a_live_study_exits_2_and_touches_nothing(tmp_path, capsys, monkeypatch):
    """Two run folders, one shared study: the second driver refuses before Ray starts; the first one's RUNNING trial
    stays RUNNING."""
    import ray

    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    db = tmp_path / "shared.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="shared", directions=["maximize", "minimize"])
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        owner = driver_id(holder.pid)
        study.set_user_attr(LEASE_ATTR, {"owner": owner, "beat": time.time()})
        number = _running(study, owner)
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"name": "shared", "data": {"name": "digits"}, "storage": f"sqlite:///{db}"}))
        rc = main(["search", str(path), "--results", str(tmp_path / "results")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and f"another driver (pid {holder.pid} on" in err, err
        assert study.get_trials()[number].state == TrialState.RUNNING
        assert not (tmp_path / "results").exists() and not ray.is_initialized()
    finally:
        holder.kill()
        holder.wait()


def test_claim_run_is_atomic(tmp_path):
    """A driver holding the run folder's lock (here: still starting, so no driver.json yet) keeps a second out."""
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", f"import time, sys; sys.path.insert(0, {str(ROOT)!r}); "
                               f"from search.cluster import claim_run; c = claim_run(__import__('pathlib').Path("
                               f"{str(run)!r}), out=print); print('ready', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ConfigError, match=f"^--resume: run folder .* is being searched by process {holder.pid}"):
            claim_run(run, out=lambda s: None)
    finally:
        holder.kill()
        holder.wait()
    claim_run(run, out=lambda s: None).release()  # the kernel dropped the lock with the process


def test_a_gpu_no_node_has_stops_after_connecting(tmp_path, monkeypatch):
    import ray
    import torch

    from search.run import init_ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    want = torch.cuda.device_count() + 1
    ray_tmp = tempfile.mkdtemp(prefix="nasg", dir="/tmp")
    if ray.is_initialized():
        ray.shutdown()
    try:
        with pytest.raises(ConfigError, match=rf"^ray.gpus_per_trial: a trial needs {want} GPU\(s\) but the "
                                              rf"largest Ray node has {want - 1} \(this machine\)"):
            init_ray(parse_config({"ray": {"gpus_per_trial": want, "num_cpus": 1, "temp_dir": ray_tmp}}))
        assert not ray.is_initialized()  # the Ray it started is stopped again
    finally:
        ray.shutdown()


def test_a_failure_at_run_time_exits_1_with_the_traceback_in_the_run_folder(tmp_path, capsys, monkeypatch):
    """A ValueError raised by export (after the trials ran) is no usage error: exit 1, one line, error.log."""
    import search.results.export
    import search.run

    def broken_export(*args, **kwargs):
        raise ValueError("export broke\nsecond line")

    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    monkeypatch.setattr(search.run, "init_ray", lambda cfg: None)
    monkeypatch.setattr(search.run, "run_search", lambda *a, **k: None)
    monkeypatch.setattr(search.results.export, "export_run", broken_export)
    path = tmp_path / "c.yaml"
    path.write_text("name: boom\ndata: {name: digits}\n")
    rc = main(["search", str(path), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    log = tmp_path / "results" / "boom" / "error.log"
    assert rc == 1 and err == f"nas: error: ValueError: export broke (traceback in {log})\n"
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken_export" in text and "second line" in text
    assert not (tmp_path / "results" / "boom" / "driver.json").exists()  # the run folder was released


def test_a_failure_elsewhere_logs_to_the_run_folder_or_the_working_folder(tmp_path, capsys, monkeypatch):
    import search.run

    def broken(*args, **kwargs):
        raise RuntimeError("resolving broke")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NAS_STORAGE_URL", raising=False)
    monkeypatch.setattr(search.run, "read_record", broken)
    (tmp_path / "c.yaml").write_text("name: early\n")
    (tmp_path / "results" / "early").mkdir(parents=True)
    (tmp_path / "results" / "early" / "run.json").write_text("{}")
    assert main(["search", "c.yaml", "--resume", "--results", "results"]) == 1
    assert "RuntimeError: resolving broke (traceback in results/early/error.log)" in capsys.readouterr().err
    monkeypatch.setattr(search.run, "search_from_config", broken)
    assert main(["search", "c.yaml", "--results", "nowhere"]) == 1  # no run folder was made
    assert "(traceback in nas-error.log)" in capsys.readouterr().err
    assert "resolving broke" in (tmp_path / "nas-error.log").read_text() and not (tmp_path / "nowhere").exists()


# --------------------------------------------------------------------------- the latency gate's folder


def test_gate_folder_is_private_to_this_user(tmp_path):
    from evaluators.latency_gate import MeasureGate, user_lock_dir

    folder = user_lock_dir(tmp_path)
    st = os.lstat(folder)
    assert folder == tmp_path / f"nas-{os.getuid()}" and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700
    os.chmod(folder, 0o777)  # loosened by hand: tightened again
    assert stat.S_IMODE(os.lstat(user_lock_dir(tmp_path)).st_mode) == 0o700
    gate = MeasureGate.for_device("cpu")
    assert gate.path.parent == Path(tempfile.gettempdir()).resolve() / f"nas-{os.getuid()}"
    with gate.measuring():
        assert stat.S_IMODE(os.stat(gate.path).st_mode) & 0o077 == 0


def test_gate_folder_of_another_user_or_a_link_is_refused(tmp_path):
    from evaluators.latency_gate import user_lock_dir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    base = tmp_path / "base"
    base.mkdir()
    (base / f"nas-{os.getuid()}").symlink_to(elsewhere)  # someone planted a link to their folder
    with pytest.raises(PermissionError, match="is not a folder, not a folder of this user"):
        user_lock_dir(base)
    if os.geteuid() != 0:
        pytest.skip("making a folder owned by another user needs root")
    other = pwd.getpwnam("nobody").pw_uid
    theirs = tmp_path / "theirs"
    (theirs / f"nas-{os.getuid()}").mkdir(parents=True, mode=0o700)
    os.chown(theirs / f"nas-{os.getuid()}", other, -1)
    with pytest.raises(PermissionError, match=f"is owned by uid {other}, not a folder of this user"):
        user_lock_dir(theirs)
