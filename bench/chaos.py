"""Chaos benchmark: a real search (digits, MO-ASHA, two trials at a time) interrupted at seeded random moments,
then resumed with ``--resume`` until its budget is done.

Modes: ``driver`` (kill -9 to the search driver), ``worker`` (kill -9 to a trial worker: a ``ray::ImplicitFunc``
process of the run's Ray session), ``sigint`` (SIGINT to the driver, as Ctrl-C). An interruption is delivered a
random delay (drawn from ``--seed``) after a trial of the run is training. Per mode it prints the interruptions
delivered, the finished trials lost (a trial COMPLETE/PRUNED/FAIL in one snapshot of the storage whose state or
values differ later; must be 0), the trials evaluated twice (an architecture trained to COMPLETE/PRUNED by more
than one trial, cache answers excluded; an interrupted trial's re-run is not finished, so it does not count;
must be 0), finished trials (re-proposals answered from the storage excluded, as the budget counts) against the
budget, and the wall time against an uninterrupted run of the same size.

    python bench/chaos.py --interruptions 20 --modes driver,worker,sigint --trials 24 --seed 0
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("driver", "worker", "sigint")
SPACE = {"strides": [1, 2, 2], "base_widths": [8, 16, 16], "width_mult": [0.25, 0.5, 1.0], "depth": [1, 2],
         "order": ["pre", "post"], "act": ["relu", "elu"], "per_stage": ["depth", "width_mult", "act"]}
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def config(name: str, *, trials: int, epochs: int, seed: int, ray_tmp: str) -> dict[str, Any]:
    """The benchmark's search: 3,456 digits architectures, MO-ASHA (η=2), 2 trials at a time."""
    return {"name": name, "data": {"name": "digits"}, "space": SPACE, "objectives": ["val_acc", "macs"],
            "proxy": {"epochs": epochs, "batch_size": 64, "lr": 0.05},
            "scheduler": {"name": "mo_asha", "grace_period": 1, "reduction_factor": 2},
            "search": {"sampler": "random", "n_trials": trials, "max_concurrent": 2, "seed": seed},
            "latency": {"lock_dir": str(Path(ray_tmp) / "locks")}, "ray": {"num_cpus": 2, "temp_dir": ray_tmp}}


def snapshot(db: Path) -> dict[int, dict[str, Any]]:
    """Every trial of the storage: number → state, values, arch_id, cached_from, interrupted (plain SQL)."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute("SELECT trial_id, number, state, datetime_start FROM trials").fetchall()
        values: dict[int, list] = {}
        for tid, v in con.execute("SELECT trial_id, value FROM trial_values ORDER BY trial_id, objective"):
            values.setdefault(tid, []).append(v)
        attrs: dict[int, dict[str, Any]] = {}
        for tid, key, v in con.execute("SELECT trial_id, key, value_json FROM trial_user_attributes WHERE key IN "
                                       "('arch_id', 'cached_from', 'interrupted')"):
            attrs.setdefault(tid, {})[key] = json.loads(v)
    except sqlite3.OperationalError:  # tables not created yet
        return {}
    finally:
        con.close()
    return {n: {"state": s, "values": values.get(tid), "start": start, **attrs.get(tid, {})}
            for tid, n, s, start in rows}


def training(db: Path, since: str) -> bool:
    """True when a trial sampled by this driver (it has an arch_id; started at or after ``since``, Optuna's local
    ISO time) is RUNNING; a killed driver's RUNNING trials stay so until the resumed one closes them."""
    return any(t["state"] == "RUNNING" and t.get("arch_id") and (t["start"] or "") >= since
               for t in snapshot(db).values())


def workers(run: Path) -> list[int]:
    """The ``ray::ImplicitFunc`` processes (trial actors) of the run's current Ray session."""
    from search.cluster import DRIVER_FILE, processes_using

    try:
        session = json.loads((run / DRIVER_FILE).read_text())["session_dir"]
    except (OSError, ValueError, KeyError):
        return []
    out = []
    for pid in processes_using(session) if session else []:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                out.append(pid)
        except OSError:
            pass
    return out


def lost_trials(history: list[dict[int, dict[str, Any]]]) -> list[int]:
    """Trials finished (not interrupted) in one snapshot whose state or values differ in a later one."""
    lost = set()
    for i, snap in enumerate(history):
        for n, t in snap.items():
            if t["state"] in FINISHED and not t.get("interrupted"):
                for later in history[i + 1:]:
                    u = later.get(n)
                    if u is None or (u["state"], u["values"]) != (t["state"], t["values"]):
                        lost.add(n)
    return sorted(lost)


def evaluated_twice(final: dict[int, dict[str, Any]]) -> int:
    """Extra trainings of an architecture: COMPLETE/PRUNED trials not answered from the cache, beyond one per arch."""
    trained: dict[str, int] = {}
    for t in final.values():
        if t["state"] in ("COMPLETE", "PRUNED") and t.get("cached_from") is None and t.get("arch_id"):
            trained[t["arch_id"]] = trained.get(t["arch_id"], 0) + 1
    return sum(n - 1 for n in trained.values())


class Run:
    """One run folder searched by successive drivers (`nas search`, then `--resume`) until its budget is done."""

    def __init__(self, work: Path, name: str, cfg: dict[str, Any], *, timeout: float) -> None:
        self.path = work / f"{name}.yaml"
        self.path.write_text(yaml.safe_dump(cfg))
        self.results, self.run = work / "results", work / "results" / name
        self.db, self.log = self.run / "study.db", work / f"{name}.log"
        self.timeout, self.history, self.starts, self.hung = timeout, [], 0, 0
        self.env = {k: v for k, v in os.environ.items() if k not in ("NAS_STORAGE_URL", "RAY_ADDRESS")}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH")) if p)

    def start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "search.cli", "search", str(self.path), "--results", str(self.results)]
        with open(self.log, "a") as log:
            proc = subprocess.Popen([*cmd, *(["--resume"] if self.starts else [])], cwd=self.path.parent,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        self.since = datetime.datetime.now().isoformat(sep=" ")
        self.deadline = time.time() + self.timeout
        return proc

    def wait_until(self, proc: subprocess.Popen, ready: Any) -> bool:
        """Poll until ``ready()``; False when the driver ended first (or hung past the timeout)."""
        while proc.poll() is None:
            if ready():
                return True
            if time.time() > self.deadline:
                self.hung += 1
                proc.kill()
                proc.wait()
                return False
            time.sleep(0.1)
        return False

    def finish(self, proc: subprocess.Popen) -> int:
        """Wait for the driver to end (killing it past the timeout); snapshot the storage; its exit code."""
        try:
            rc = proc.wait(timeout=max(1.0, self.deadline - time.time()))
        except subprocess.TimeoutExpired:
            self.hung += 1
            proc.kill()
            rc = proc.wait()
        self.history.append(snapshot(self.db))
        return rc


def run_mode(mode: str | None, run: Run, *, interruptions: int, rng: random.Random, max_delay: float) -> dict:
    """Search ``run`` to its budget, delivering ``interruptions`` of ``mode`` (None: none); the row to print."""
    t0, delivered, bad_exits = time.time(), 0, []
    while True:
        proc = run.start()
        while mode is not None and delivered < interruptions:
            if not run.wait_until(proc, lambda: training(run.db, run.since)):
                break
            time.sleep(rng.uniform(0.0, max_delay))
            if mode == "worker":
                if not run.wait_until(proc, lambda: bool(workers(run.run))):
                    break
                pids = workers(run.run)
                if not pids:
                    continue
                os.kill(rng.choice(sorted(pids)), signal.SIGKILL)
                delivered += 1
                run.history.append(snapshot(run.db))
                continue
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL if mode == "driver" else signal.SIGINT)
            delivered += 1
            break
        rc = run.finish(proc)
        expected = {"driver": -signal.SIGKILL, "sigint": 130}.get(mode)
        if rc == 0 and snapshot_done(run):
            break
        if rc not in (0, expected):
            bad_exits.append(rc)
        if run.starts > 2 * interruptions + 5:  # a bound: never loop forever on a broken resume
            break
    final = run.history[-1]
    states = sorted({t["state"] for t in final.values()})
    budget = yaml.safe_load(run.path.read_text())["search"]["n_trials"]
    finished = sum(t["state"] in FINISHED and not t.get("interrupted") and t.get("cached_from") is None
                   for t in final.values())  # a re-proposal answered from the storage is not counted
    return {"mode": mode or "baseline", "interruptions": delivered, "lost": len(lost_trials(run.history)),
            "twice": evaluated_twice(final), "finished": finished, "budget": budget, "starts": run.starts,
            "hung": run.hung, "bad_exits": bad_exits, "wall_s": time.time() - t0,
            "states": {s: sum(t["state"] == s for t in final.values()) for s in states}}


def snapshot_done(run: Run) -> bool:
    """The export ran: the driver finished the budget."""
    return (run.run / "summary.json").is_file()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interruptions", type=int, default=3, help="interruptions per mode (default 3)")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default all)")
    ap.add_argument("--trials", type=int, default=24, help="the search budget (default 24)")
    ap.add_argument("--epochs", type=int, default=2, help="proxy epochs per trial, ≥ 2 for a rung (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="draws the interruption moments and the sampler seed")
    ap.add_argument("--max-delay", type=float, default=4.0,
                    help="an interruption comes up to this many seconds after a trial is training (default 4)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the uninterrupted run (no overhead column)")
    ap.add_argument("--timeout", type=float, default=900.0, help="a driver running longer counts as hung (s)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--keep-logs", default=None, help="copy every driver's log (MODE.log) into this folder")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        ap.error(f"--modes: unknown mode {bad[0] if bad else '(none)'!r}; valid: {', '.join(MODES)}")
    if args.epochs < 2:
        ap.error("--epochs: must be >= 2 (MO-ASHA needs a rung below the last epoch)")
    from search.cluster import kill_processes, processes_using

    rng = random.Random(args.seed)
    rows = []
    ray_tmp = tempfile.mkdtemp(prefix="nasx", dir="/tmp")  # short: Ray's socket paths are length-limited
    work = Path(ray_tmp) / "work"
    work.mkdir()
    try:
        for mode in ([] if args.no_baseline else [None]) + modes:
            name = mode or "baseline"
            cfg = config(name, trials=args.trials, epochs=args.epochs, seed=args.seed, ray_tmp=ray_tmp)
            run = Run(work, name, cfg, timeout=args.timeout)
            rows.append(run_mode(mode, run, interruptions=args.interruptions, rng=rng, max_delay=args.max_delay))
            print(row_line(rows[-1], rows[0] if not args.no_baseline else None), flush=True)
    finally:
        kill_processes(processes_using(ray_tmp))  # never leave a Ray process of the benchmark behind
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, Path(args.keep_logs) / log.name)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    ok = all(r["lost"] == 0 and r["twice"] == 0 and r["finished"] == r["budget"] and not r["hung"]
             and not r["bad_exits"] for r in rows)
    return 0 if ok else 1


def row_line(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    over = "-" if base is None or r is base else f"{r['wall_s'] / base['wall_s'] - 1:+.0%}"
    extra = "".join(f"  {k}={r[k]}" for k in ("hung", "bad_exits") if r[k])
    return (f"{r['mode']:8} interruptions {r['interruptions']:>3}  lost {r['lost']}  twice {r['twice']}  "
            f"finished {r['finished']}/{r['budget']}  starts {r['starts']:>2}  wall {r['wall_s']:7.1f}s  "
            f"overhead {over:>6}  states {r['states']}{extra}")


if __name__ == "__main__":
    sys.exit(main())
