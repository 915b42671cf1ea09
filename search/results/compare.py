"""``nas compare RUN_DIR --presets ...``: hand-designed networks measured exactly like the run's trials.

Each preset (a name such as ``wrn-16-4`` or a YAML path) gets its ``input_size`` replaced by the
data's and is evaluated by the run's own :class:`~search.evaluation.ArchEvaluation`: the same data,
validation split, seed, proxy budget and latency settings as every trial, and the run's latency
cache (``latency_cache.sqlite``), so latency is measured the way the search measured it (once per
architecture, behind the machine-wide measurement gate; or predicted from the same table). The
config's hard ``constraints`` and any test fault injection are lifted, so a preset above a limit is
still measured (its row lists the limits it exceeds). The front's numbers are the stored ones; afterwards the
front and every compared preset are timed again together in one session (``front_latency.csv``), whose latencies
are comparable with each other.

A preset is *dominated* by a front architecture when the architecture is at least as good in every
objective of the run and strictly better in one (Pareto dominance; Deb et al. 2002, §II).
Results go to ``RUN_DIR/compare.json`` and ``compare.csv`` (merged with earlier rows, keyed by preset
name; a preset already measured with the same ``arch_id`` is reused unless ``force``).

``jobs`` presets train at once, each in its own (spawned) process with ``threads`` threads, as a search runs
``max_concurrent`` trials: each number is the same function of (architecture, seed, threads) as when trained one
at a time, and latency is still measured behind the measurement gate, so the training processes pause meanwhile.
"""
from __future__ import annotations

import csv
import json
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from evaluators import get_metric, list_metrics
from space import Arch, load_arch

from ..config import Config
from ..limits import ConstraintsConfig, given_limits
from ..pareto import dominates
from .export import metric_columns, open_run
from .selection import load_compare

CSV_HEAD = ("name", "arch_id", "status")
CSV_TAIL = ("over_constraints", "dominated_by", "dominates", "reason")


def to_minimise(values: Sequence[float], objectives: Sequence[str]) -> list[float]:
    """Objective values with every maximised objective negated, so that smaller is better everywhere."""
    return [-float(v) if get_metric(o).direction == "max" else float(v) for v, o in zip(values, objectives)]


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front over COMPLETE trials (empty when there is none)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    return list(study.best_trials)


def trial_metrics(t: FrozenTrial, objectives: Sequence[str]) -> dict[str, Any]:
    """Objective values and recorded side metrics of a trial, by name."""
    m = {k: t.user_attrs[k] for k in list_metrics() if k in t.user_attrs}
    if t.values is not None:
        m.update(zip(objectives, t.values))
    return m


def _resolve(presets: Sequence[str], input_size: int) -> list[tuple[str, Arch]]:
    """Every preset resolved before anything trains (a bad name stops the command at once)."""
    out = []
    for name in presets:
        name = name.strip()
        if name:
            out.append((name, load_arch(name).replace(input_size=input_size)))
    if not out:
        raise ValueError("--presets: give at least one preset name or YAML path")
    return out


def _measure(name: str, arch: Arch, evaluate: Any, cfg: Config, out: Callable[[str], None]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "arch_id": arch.arch_id, "arch_yaml": arch.to_yaml()}
    epochs = cfg.proxy.epochs
    t0 = time.perf_counter()

    def report(m: dict[str, Any]) -> None:
        out(f"  {name}: epoch {m['epoch']}/{epochs}  val_acc {m['val_acc']:.4f}  "
            f"({time.perf_counter() - t0:.0f}s)")

    try:
        m = evaluate(arch, report)
    except Exception as exc:  # an impossible preset (too small an input, ...) is a row with its reason
        return {**row, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    row.update({k: m[k] for k in list_metrics() if k in m})
    over = [metric.name for _, metric, bound in given_limits(cfg.constraints)
            if m.get(metric.name) is not None and not metric.within(m[metric.name], bound)]
    return {**row, "status": "ok", "over_constraints": over}


def _measure_apart(conn: Any, name: str, arch: Arch, evaluate: Any, cfg: Config) -> None:
    """:func:`_measure` in a process of its own (``jobs > 1``): the row goes back through ``conn``; its epoch lines
    go straight to this process's stdout."""
    try:
        conn.send(_measure(name, arch, evaluate, cfg, lambda s: print(s, flush=True)))
    finally:
        conn.close()


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """A Ctrl-C meanwhile is held back and raised (as the handler before would) when this ends. SIGINT is blocked
    in this thread, so a process started meanwhile inherits the mask through fork and exec and never sees the
    terminal's Ctrl-C; and it is only noted should another thread of this process take it. Outside the main thread
    (a library caller) nothing is changed: Python runs signal handlers in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # one pending is delivered now, and noted
        signal.signal(signal.SIGINT, before)
        if noted:
            if callable(before):
                before(signal.SIGINT, None)
            elif before != signal.SIG_IGN:
                raise KeyboardInterrupt


def compare_presets(run_dir: Path, presets: Sequence[str], *, storage: optuna.storages.BaseStorage | None = None,
                    data_dir: str | None = None, threads: int | None = None, force: bool = False,
                    remeasure: bool = True, jobs: int = 1, out: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure ``presets`` under the run's proxy evaluation; write compare.json/.csv; return the document.
    ``jobs``: presets trained at once (module docstring); their epoch lines are printed by the workers.
    ``remeasure`` (and the config's ``latency.remeasure_front``): then time the front and every compared preset
    again in one session (``front_latency.csv``, :mod:`.front_latency`), so their latencies are comparable."""
    from ..evaluation import ArchEvaluation, load_data

    run_dir = Path(run_dir)
    study, cfg = open_run(run_dir, storage)
    if data_dir is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"data_dir": data_dir})})
    data = load_data(cfg)
    todo = _resolve(presets, data.input_size)
    threads = threads or max(1, int(cfg.ray.cpus_per_trial))
    lifted = cfg.model_copy(update={"constraints": ConstraintsConfig(),
                                    "faults": cfg.faults.model_copy(update={"inject": None})})
    evaluate = ArchEvaluation(lifted, threads=threads, cache_dir=run_dir)
    objectives = cfg.objectives
    previous = {r["name"]: r for r in (load_compare(run_dir) or {}).get("presets", [])}
    rows = dict(previous)
    front = front_trials(study)
    front_rows = [{"number": t.number, "arch_id": t.user_attrs.get("arch_id"), **trial_metrics(t, objectives)}
                  for t in front]
    head = {"run": str(run_dir), "study_name": study.study_name, "objectives": objectives,
            "directions": cfg.directions, "data": cfg.data.model_dump(mode="json"),
            "input_size": data.input_size, "proxy": cfg.proxy.model_dump(mode="json"), "seed": cfg.search.seed,
            "latency": cfg.latency.model_dump(mode="json"), "threads": threads}
    train = []
    for name, arch in todo:
        old = previous.get(name)
        if old and not force and old.get("status") == "ok" and old.get("arch_id") == arch.arch_id:
            out(f"{name}: reusing the earlier measurement in compare.json (--force to redo)")
            continue
        train.append((name, arch))
    if jobs > 1 and len(train) > 1:
        _measure_in_parallel(train, evaluate, cfg, jobs=jobs, out=out,
                             done=lambda name, row: (rows.__setitem__(name, row),
                                                     _write(run_dir, head, front_rows, rows)))
    else:
        for name, arch in train:
            out(f"{name}: {arch.arch_id}, training {cfg.proxy.epochs} proxy epochs on {cfg.data.name} "
                f"({data.input_size}×{data.input_size})")
            row = _measure(name, arch, evaluate, cfg, out)
            with _sigint_deferred():  # after every preset: an interruption keeps what is done
                rows[name] = row
                _write(run_dir, head, front_rows, rows)
    names = [*previous, *(name for name, _ in todo if name not in previous)]  # not the order they finished in
    rows = {name: rows[name] for name in names if name in rows}
    doc = _write(run_dir, head, front_rows, rows)
    out(format_table(doc))
    if remeasure and cfg.latency.remeasure_front:
        from .front_latency import remeasure_run

        remeasure_run(run_dir, study, cfg, out=out)
    return doc


def _measure_in_parallel(train: list[tuple[str, Arch]], evaluate: Any, cfg: Config, *, jobs: int,
                         out: Callable[[str], None], done: Callable[[str, dict[str, Any]], Any]) -> None:
    """Train ``train`` with at most ``jobs`` at once, each preset in a spawned process of its own; ``done(name,
    row)`` as each finishes. A process that ends without a row (killed, out of memory) is that preset's failed row
    with its exit code; the others go on. On an exception here (Ctrl-C) the running processes are terminated."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    pending = list(train)
    running: dict[Any, tuple[str, Arch, Any]] = {}  # the receiving end of its pipe → (name, arch, process)
    out(f"training {len(train)} preset(s), {min(jobs, len(train))} at a time ({cfg.proxy.epochs} proxy epochs on "
        f"{cfg.data.name}): {', '.join(name for name, _ in train)}")
    try:
        while pending or running:
            while pending and len(running) < jobs:
                with _sigint_deferred():  # started and registered as one step: a Ctrl-C then ends it too
                    name, arch = pending.pop(0)
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(target=_measure_apart, args=(send, name, arch, evaluate, cfg),
                                       name=f"nas-compare-{name}")
                    proc.start()
                    send.close()
                    running[recv] = (name, arch, proc)
            for recv in wait(list(running)):  # a row arrived, or the process ended without one (EOF)
                with _sigint_deferred():  # a finished preset is kept before a Ctrl-C is acted on
                    name, arch, proc = running.pop(recv)
                    try:
                        row = recv.recv()
                    except EOFError:
                        row = None
                    recv.close()
                    proc.join()
                    if row is None:
                        row = {"name": name, "arch_id": arch.arch_id, "arch_yaml": arch.to_yaml(),
                               "status": "failed", "reason": f"the process training it ended with exit code "
                                                             f"{proc.exitcode} before it reported (killed, or out "
                                                             f"of memory)"}
                    done(name, row)
                    out(f"{name}: done ({row['status']})")
    finally:
        for _, _, proc in running.values():
            proc.terminate()
            proc.join()


def _write(run_dir: Path, head: dict[str, Any], front_rows: list[dict[str, Any]],
           rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for r in rows.values():
        _dominance(r, front_rows, head["objectives"])
    doc = {**head, "generated": time.strftime("%Y-%m-%dT%H:%M:%S"), "front": front_rows,
           "presets": list(rows.values())}
    tmp = run_dir / "compare.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(run_dir / "compare.json")
    _write_csv(run_dir / "compare.csv", doc["presets"], head["objectives"])
    return doc


def _dominance(row: dict[str, Any], front_rows: list[dict[str, Any]], objectives: Sequence[str]) -> None:
    if row.get("status") != "ok":
        row["dominated_by"], row["dominates"] = [], []
        return
    mine = to_minimise([row[o] for o in objectives], objectives)
    front = [(f["number"], to_minimise([f[o] for o in objectives], objectives)) for f in front_rows]
    row["dominated_by"] = [n for n, theirs in front if dominates(theirs, mine)]
    row["dominates"] = [n for n, theirs in front if dominates(mine, theirs)]
    row["closest"] = None if row["dominated_by"] else closest_front_point(row, front_rows, objectives)


def shortfall(front_value: float, preset_value: float, direction: str) -> float:
    """How much better (as a fraction) a front value would have to be to match the preset's: the multiplicative
    ε of Zitzler et al. 2003 (the least ε with ``f·(1+ε) ≥ p`` for a maximised objective, ``f/(1+ε) ≤ p`` for a
    minimised one); 0 where the front value is already as good, inf where no factor helps (a value ≤ 0)."""
    f, p = float(front_value), float(preset_value)
    good = f >= p if direction == "max" else f <= p
    if good:
        return 0.0
    if direction == "max":
        return p / f - 1.0 if f > 0 else float("inf")
    return f / p - 1.0 if p > 0 else float("inf")


def closest_front_point(row: dict[str, Any], front_rows: list[dict[str, Any]],
                        objectives: Sequence[str]) -> dict[str, Any] | None:
    """For a preset the front does not dominate: the front architecture that comes closest, by the multiplicative
    ε-indicator (the least factor by which it would have to improve in every objective to weakly dominate the
    preset; ties by trial number), as ``{"number", "epsilon", "shortfall": {objective: ε_i}}``; None without a
    front."""
    best = None
    for f in front_rows:
        eps = {o: shortfall(f[o], row[o], get_metric(o).direction) for o in objectives}
        cand = {"number": f["number"], "epsilon": max(eps.values()), "shortfall": eps}
        if best is None or (cand["epsilon"], cand["number"]) < (best["epsilon"], best["number"]):
            best = cand
    return best


def _write_csv(path: Path, rows: list[dict[str, Any]], objectives: list[str]) -> None:
    header = [*CSV_HEAD, *metric_columns(objectives, rows), *CSV_TAIL]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, **{k: " ".join(str(x) for x in r.get(k) or []) for k in
                                ("over_constraints", "dominated_by", "dominates")}})


def format_table(doc: dict[str, Any]) -> str:
    """The comparison as a fixed-width text table (one column per objective, formatted by the metric table),
    then one line: which presets the front dominates."""
    objectives = doc["objectives"]
    metrics = [get_metric(o) for o in objectives]
    w = max([16] + [len(r["name"]) + 2 for r in doc["presets"]])
    cw = [max(10, len(o) + 2) for o in objectives]
    lines = [f"{'preset':<{w}}{'arch_id':<14}" + "".join(f"{o:>{c}}" for o, c in zip(objectives, cw))
             + "  dominated by front trials"]
    for r in doc["presets"]:
        if r.get("status") != "ok":
            lines.append(f"{r['name']:<{w}}{r['arch_id']:<14}  failed: {r.get('reason', '')}")
            continue
        by = ", ".join(f"#{n}" for n in r["dominated_by"]) or "— (not dominated)"
        if r["dominates"]:
            by += f"; it dominates front trial(s) {', '.join(f'#{n}' for n in r['dominates'])}"
        cells = "".join(f"{m.format(r[m.name]):>{c}}" for m, c in zip(metrics, cw))
        lines.append(f"{r['name']:<{w}}{r['arch_id']:<14}{cells}  {by}")
    front = doc["front"]
    lines.append(f"{'front':<{w}}{len(front)} architecture(s): " + ", ".join(
        f"#{f['number']} " + " ".join(f"{m.name} {m.format(f[m.name])}" for m in metrics) for f in front))
    ok = [r for r in doc["presets"] if r.get("status") == "ok"]
    dominated = [r["name"] for r in ok if r["dominated_by"]]
    lines.append(f"the front dominates {len(dominated)} of {len(ok)} preset(s)"
                 + (f": {', '.join(dominated)}" if dominated else "")
                 + f" (objectives {', '.join(objectives)}; proxy {doc['proxy']['epochs']} epochs, seed {doc['seed']})")
    by_number = {f["number"]: f for f in front}
    for r in ok:
        c = r.get("closest")
        if r["dominated_by"] or not c:
            continue
        f = by_number[c["number"]]
        misses = ", ".join(f"{m.name} {m.format(f[m.name])} vs {m.format(r[m.name])} ({c['shortfall'][m.name]:.1%})"
                           for m in metrics if c["shortfall"][m.name] > 0) or "equal in every objective"
        lines.append(f"  {r['name']}: closest front trial #{c['number']} misses by {c['epsilon']:.1%}: {misses}")
    return "\n".join(lines)
