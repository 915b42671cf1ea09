"""`nas compare`: presets measured exactly like the run's trials (same budget, data split, seed), Pareto dominance
against the front, compare.json/.csv, and the presets overlaid in `nas report`."""
from __future__ import annotations

import csv
import json

import pytest

from search import open_run
from search.cli import main
from search.pareto import dominates
from search.results.compare import format_table, to_minimise
from search.results.report import build_report

from ._tiny_run import ROOT, copy_run, tiny_run

OBJ = ["val_acc", "macs", "latency_ms"]


def dom(a: list[float], b: list[float]) -> bool:
    """Pareto dominance in the run's objective directions."""
    return dominates(to_minimise(a, OBJ), to_minimise(b, OBJ))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "tiny_shared"
    base.mkdir(exist_ok=True)
    return tiny_run(base)


def test_dominance_by_hand():
    assert to_minimise([0.9, 5.0, 2.0], OBJ) == [-0.9, 5.0, 2.0]
    assert dom([0.9, 5, 2], [0.8, 5, 2])          # better accuracy, same costs
    assert dom([0.9, 4, 2], [0.9, 5, 2])          # fewer MACs
    assert not dom([0.9, 5, 2], [0.9, 5, 2])      # equal: neither dominates
    assert not dom([0.95, 6, 2], [0.9, 5, 2])     # a trade-off
    assert not dom([0.8, 5, 2], [0.9, 5, 2])


def test_closest_front_point_by_hand():
    """A preset the front misses: the front point needing the least uniform improvement (Zitzler et al.'s
    multiplicative ε) is named with its per-objective shortfall; a dominated preset has none."""
    front = [{"number": 3, "val_acc": 0.40, "macs": 8e6, "latency_ms": 1.0},   # acc ×1.05 short, latency ×1.25
             {"number": 7, "val_acc": 0.38, "macs": 4e6, "latency_ms": 0.7},   # acc 0.42/0.38 − 1 = 10.5% short
             {"number": 9, "val_acc": 0.41, "macs": 9e6, "latency_ms": 0.84}]  # 2.4% acc, 12.5% macs, 5% latency
    preset = {"name": "p", "arch_id": "x", "status": "ok", "val_acc": 0.42, "macs": 8e6, "latency_ms": 0.8}
    beaten = {"name": "q", "arch_id": "y", "status": "ok", "val_acc": 0.30, "macs": 9e6, "latency_ms": 1.2}
    doc = {"objectives": OBJ, "presets": [preset, beaten], "front": front, "proxy": {"epochs": 3}, "seed": 0}
    from search.results.compare import _dominance

    for r in (preset, beaten):
        _dominance(r, front, OBJ)
    assert preset["dominated_by"] == [] and beaten["dominated_by"] == [3, 7, 9] and beaten["closest"] is None
    c = preset["closest"]
    assert c["number"] == 7 and c["epsilon"] == pytest.approx(0.42 / 0.38 - 1)  # #3: 25%, #9: 12.5%
    assert c["shortfall"] == {"val_acc": pytest.approx(0.42 / 0.38 - 1), "macs": 0.0, "latency_ms": 0.0}
    table = format_table(doc)
    assert "the front dominates 1 of 2 preset(s): q" in table
    assert "  p: closest front trial #7 misses by 10.5%: val_acc 0.3800 vs 0.4200 (10.5%)" in table


def test_compare_reproduces_a_trial_and_reports_dominance(tiny, tmp_path, capsys):
    run = copy_run(tiny, tmp_path)
    study, cfg = open_run(run)
    twin_trial = max(study.best_trials, key=lambda t: t.values[0])
    twin = run / "pareto" / f"{twin_trial.user_attrs['arch_id']}.yaml"
    assert main(["compare", str(run), "--presets", f"wrn-10-1,{twin}"]) == 0
    out = capsys.readouterr().out
    assert "the front dominates" in out and "wrn-10-1" in out

    doc = json.loads((run / "compare.json").read_text())
    assert doc["objectives"] == cfg.objectives == OBJ and doc["proxy"]["epochs"] == cfg.proxy.epochs
    rows = {r["name"]: r for r in doc["presets"]}
    assert set(rows) == {"wrn-10-1", str(twin)}
    assert all(r["status"] == "ok" for r in rows.values()), [r.get("reason") for r in rows.values()]
    # same proxy budget, data, split and seed as the search: the trial's accuracy and MACs exactly
    mine = rows[str(twin)]
    assert mine["arch_id"] == twin_trial.user_attrs["arch_id"]
    assert mine["val_acc"] == twin_trial.values[0] and mine["macs"] == twin_trial.values[1]
    assert twin_trial.number not in mine["dominated_by"]
    # the preset's input size was replaced by the data's (digits: 16×16, 1 channel)
    assert "input_size: 16" in rows["wrn-10-1"]["arch_yaml"]
    # dominance fields agree with the numbers written beside them
    front = doc["front"]
    assert sorted(f["number"] for f in front) == sorted(t.number for t in study.best_trials)
    for r in rows.values():
        vec = [r[o] for o in OBJ]
        assert r["dominated_by"] == [f["number"] for f in front if dom([f[o] for o in OBJ], vec)]
        assert r["dominates"] == [f["number"] for f in front if dom(vec, [f[o] for o in OBJ])]
    with open(run / "compare.csv") as f:
        assert {r["name"] for r in csv.DictReader(f)} == set(rows)
    # afterwards the front and both presets were timed again together, in one session
    timed = json.loads((run / "front_latency.json").read_text())
    assert {r["name"] for r in timed["rows"] if r["kind"] == "preset"} == set(rows)
    assert {r["arch_id"] for r in timed["rows"] if r["kind"] == "front"} == {f["arch_id"] for f in front}
    assert len({r["measured_at"] for r in timed["rows"]}) == 1
    same = [r["latency_ms"] for r in timed["rows"] if r["arch_id"] == mine["arch_id"]]
    assert len(same) == 2 and same[0] == same[1]  # the twin and its trial: one architecture, measured once

    # a second call reuses the measurements; the report overlays the presets
    assert main(["compare", str(run), "--presets", "wrn-10-1"]) == 0
    assert "reusing the earlier measurement" in capsys.readouterr().out
    page = build_report(run, out=lambda s: None).read_text()
    assert "Presets (nas compare)" in page and "wrn-10-1" in page
    assert "presets dominated by the front" in page or "presets not dominated" in page


def test_compare_rejects_an_unknown_preset_before_training(tiny, tmp_path, capsys):
    run = copy_run(tiny, tmp_path)
    assert main(["compare", str(run), "--presets", "wrn-10-1,no-such-net"]) == 2
    err = capsys.readouterr().err
    assert "no-such-net" in err and "presets:" in err
    assert not (run / "compare.json").exists()


def test_compare_jobs_trains_presets_at_once_with_the_same_numbers(tiny, tmp_path, capsys):
    serial, parallel = copy_run(tiny, tmp_path / "serial"), copy_run(tiny, tmp_path / "parallel")
    study, _ = open_run(parallel)
    twin_trial = max(study.best_trials, key=lambda t: t.values[0])
    twin = parallel / "pareto" / f"{twin_trial.user_attrs['arch_id']}.yaml"
    presets = f"wrn-10-1,{twin},wrn-10-2"
    assert main(["compare", str(serial), "--presets", presets, "--no-remeasure"]) == 0
    capsys.readouterr()
    assert main(["compare", str(parallel), "--presets", presets, "--no-remeasure", "--jobs", "2"]) == 0
    assert "3 preset(s), 2 at a time" in capsys.readouterr().out
    one, two = (json.loads((run / "compare.json").read_text())["presets"] for run in (serial, parallel))
    assert [r["name"] for r in two] == [r["name"] for r in one] == presets.split(",")  # not the finishing order
    assert all(r["status"] == "ok" for r in two), [r.get("reason") for r in two]
    for a, b in zip(one, two):  # each number a function of (architecture, seed, threads), however many at once
        assert (a["arch_id"], a["val_acc"], a["macs"], a["params"]) == (b["arch_id"], b["val_acc"], b["macs"],
                                                                        b["params"])
    mine = next(r for r in two if r["name"] == str(twin))
    assert (mine["val_acc"], mine["macs"]) == (twin_trial.values[0], twin_trial.values[1])  # the search's own


class DiesOn:
    """An evaluation whose process ends abruptly on one architecture (a killed worker)."""

    def __init__(self, arch_id: str) -> None:
        self.arch_id = arch_id

    def __call__(self, arch, report=None):
        import os

        if arch.arch_id == self.arch_id:
            os._exit(3)
        return {"val_acc": 0.5, "macs": 1.0, "params": 2.0, "latency_ms": 0.1}


def test_a_dying_worker_is_a_failed_row_and_the_others_finish():
    from search.config import parse_config
    from search.results.compare import _measure_in_parallel
    from space import get_preset

    cfg = parse_config({})
    archs = [(name, get_preset(name)) for name in ("wrn-10-1", "wrn-10-2", "wrn-16-1", "wrn-16-2")]
    rows, lines = {}, []
    _measure_in_parallel(archs, DiesOn(archs[1][1].arch_id), cfg, jobs=2, out=lines.append,
                         done=rows.__setitem__)
    assert set(rows) == {name for name, _ in archs}
    assert rows["wrn-10-2"]["status"] == "failed" and "exit code 3" in rows["wrn-10-2"]["reason"]
    assert [rows[name]["status"] for name in ("wrn-10-1", "wrn-16-1", "wrn-16-2")] == ["ok"] * 3
    assert rows["wrn-16-2"]["val_acc"] == 0.5


class Sleeps:
    """An evaluation that takes a minute (a preset still training), or returns at once for ``quick``."""

    def __init__(self, quick: str) -> None:
        self.quick = quick

    def __call__(self, arch, report=None):
        import time

        if arch.arch_id != self.quick:
            time.sleep(60)
        return {"val_acc": 0.5, "macs": 1.0, "params": 2.0, "latency_ms": 0.1}


def _ctrl_c() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGINT)


def _python_sigint() -> None:
    """Python's own SIGINT handler for this test (tests/conftest.py restores the one before): pytest started in the
    background by a shell without job control inherits SIGINT ignored, and Python then installs none."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


def _no_watchdog() -> bool:
    """No Ctrl-C watchdog of the CLI (search/interrupt.py) armed in this process: one would end pytest 60 s later
    (a test that ran ``main`` in-process once left the CLI's handler installed; tests/conftest.py restores it)."""
    import threading

    return "nas-interrupt-watchdog" not in [t.name for t in threading.enumerate()]


def test_ctrl_c_while_a_preset_starts_ends_that_process_too(monkeypatch):
    """A Ctrl-C that arrives while a training process is being started is handled once it is registered: the
    driver ends it with the others (it used to be left training on its own, and died on a broken pipe)."""
    import multiprocessing.context as mpc

    from search.config import parse_config
    from search.results.compare import _measure_in_parallel
    from space import get_preset

    started = []
    real_start = mpc.SpawnProcess.start

    def start_then_ctrl_c(self):
        real_start(self)
        started.append(self)
        if len(started) == 2:
            _ctrl_c()

    monkeypatch.setattr(mpc.SpawnProcess, "start", start_then_ctrl_c)
    _python_sigint()
    archs = [(name, get_preset(name)) for name in ("wrn-10-1", "wrn-10-2", "wrn-16-1")]
    rows = {}
    with pytest.raises(KeyboardInterrupt):
        _measure_in_parallel(archs, Sleeps(quick=""), parse_config({}), jobs=2, out=lambda s: None,
                             done=rows.__setitem__)
    assert _no_watchdog()
    assert len(started) == 2 and not rows
    for p in started:
        p.join(timeout=30)
    assert [p.is_alive() for p in started] == [False, False]


def test_ctrl_c_while_a_finished_preset_is_recorded_keeps_it():
    """A Ctrl-C that arrives while a finished preset's row is being written waits until it is written."""
    import time

    from search.config import parse_config
    from search.results.compare import _measure_in_parallel
    from space import get_preset

    archs = [(name, get_preset(name)) for name in ("wrn-10-1", "wrn-10-2")]
    rows, lines = {}, []
    _python_sigint()

    def record(name, row):  # Ctrl-C lands here; the row must still be kept (a preset's minutes of training)
        _ctrl_c()
        time.sleep(0.2)
        rows[name] = row

    with pytest.raises(KeyboardInterrupt):
        _measure_in_parallel(archs, Sleeps(quick=archs[0][1].arch_id), parse_config({}), jobs=2,
                             out=lines.append, done=record)
    assert _no_watchdog()
    assert list(rows) == ["wrn-10-1"] and rows["wrn-10-1"]["status"] == "ok"
    assert lines[-1] == "wrn-10-1: done (ok)"  # said after it is kept


def test_ctrl_c_keeps_finished_presets_and_ends_the_training_processes(tiny, tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: `nas compare --jobs 2` exits 130 with one line saying
    what is kept, no training process outlives it, and the same command then trains only the rest."""
    import os
    import signal
    import subprocess
    import sys

    import psutil

    run = copy_run(tiny, tmp_path)
    cmd = [sys.executable, "-m", "search.cli", "compare", str(run), "--presets", "wrn-10-1,wrn-16-4,wrn-16-2",
           "--jobs", "2", "--no-remeasure"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal's
    lines = []
    for line in proc.stdout:  # wrn-10-1 is the smallest: it finishes first, wrn-16-2 starts then
        lines.append(line)
        if line.startswith("wrn-10-1: done (ok)"):
            break
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "".join(lines)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("nas: interrupted; the presets finished so far are in compare.json: the "
                                            "same command trains the rest")
    assert "Traceback" not in err  # the training processes ignore SIGINT: only the driver reports it
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive
    session = []  # nor one started as Ctrl-C came (the command runs in a session of its own)
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == proc.pid:
                session.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    assert not psutil.wait_procs(session, timeout=30)[1]
    kept = json.loads((run / "compare.json").read_text())["presets"]
    assert "wrn-10-1" in [r["name"] for r in kept] and "wrn-16-2" not in [r["name"] for r in kept]
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "wrn-10-1: reusing the earlier measurement" in again.stdout
    assert [r["name"] for r in json.loads((run / "compare.json").read_text())["presets"]] == \
        ["wrn-10-1", "wrn-16-4", "wrn-16-2"]
