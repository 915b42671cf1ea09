"""``RUN_DIR/front_latency.csv`` (+ ``.json``): the front, the selected best and the compared presets timed again
in one interleaved session at export, so their latencies are comparable with each other.

A trial's ``latency_ms`` was measured when the trial ran; trials an hour apart on a busy machine saw different
loads. Here every architecture is timed in the same session (:func:`evaluators.latency_session.measure_session`:
rounds cycling over all of them, each beside a round of the ``wrn-16-1`` reference, behind the measurement gate,
the reference's latency looked up in the run's cache and the machine's file or calibrated once), with the run's
latency settings (device, first batch size, threads, input size). The stored numbers stay what the export's
selection uses (``best.yaml``, ``summary.json``, the front): re-measuring only the front cannot re-rank the other
trials, and an export re-derived from the storage must not change with the machine's load. The file and the report
show both numbers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial

from space import Arch, from_yaml

from ..config import Config

CSV = "front_latency.csv"
JSON = "front_latency.json"
COLUMNS = ("kind", "name", "number", "arch_id", "stored_latency_ms", "latency_ms", "lo_ms", "hi_ms", "ci_ms",
           "ratio", "ratio_lo", "ratio_hi", "rounds", "reference_ms", "measured_at")


def uses_latency(cfg: Config) -> bool:
    """``latency_ms`` is an objective, a ``select`` budget or a constraint of the run."""
    return ("latency_ms" in cfg.objectives or cfg.select.max_latency_ms is not None
            or getattr(cfg.constraints, "max_latency_ms", None) is not None)


def skip_reason(cfg: Config) -> str | None:
    """Why this machine cannot re-measure the run's latency (predicted, or its device absent), else None."""
    from evaluators.latency import check_latency_device

    if cfg.latency.mode == "predict":
        return "latency.mode is predict (the numbers come from a table, not from this machine)"
    try:
        check_latency_device(cfg.latency.device)
    except ValueError as exc:
        return str(exc)
    return None


def _stored(t: FrozenTrial, objectives: list[str]) -> float | None:
    if "latency_ms" in objectives and t.values is not None:
        return float(t.values[objectives.index("latency_ms")])
    v = t.user_attrs.get("latency_ms")
    return None if v is None else float(v)


def targets(front: list[FrozenTrial], best: FrozenTrial | None, presets: list[dict[str, Any]],
            objectives: list[str]) -> list[dict[str, Any]]:
    """One row per front trial, the best trial when it is not on the front, and every compared preset that was
    measured (``status: ok``), each with its architecture and stored latency."""
    rows = [{"kind": "front", "name": f"#{t.number}", "number": t.number, "trial": t} for t in front]
    if best is not None and best.number not in {t.number for t in front}:
        rows.append({"kind": "best", "name": f"#{best.number}", "number": best.number, "trial": best})
    out = [{"kind": r["kind"], "name": r["name"], "number": r["number"], "arch": from_yaml(r["trial"].user_attrs[
        "arch_yaml"]), "stored_latency_ms": _stored(r["trial"], objectives)} for r in rows]
    for p in presets:
        if p.get("status") == "ok" and p.get("arch_yaml"):
            out.append({"kind": "preset", "name": p["name"], "number": "", "arch": from_yaml(p["arch_yaml"]),
                        "stored_latency_ms": p.get("latency_ms")})
    return out


def remeasure_run(run_dir: Path, study: optuna.Study, cfg: Config, *, max_seconds: float | None = None,
                  timer: Any = None, out: Callable[[str], None] = print) -> dict[str, Any] | None:
    """:func:`remeasure` of the run's front (each architecture once), its ``select`` best and the presets of
    ``compare.json``; None (and not a word) when the run uses no latency or has no complete trial."""
    from optuna.trial import TrialState

    from .selection import load_compare, select_best, unique_archs

    if not uses_latency(cfg):
        return None
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE for t in trials):
        return None
    rows = targets(unique_archs(study.best_trials), select_best(trials, cfg),
                   (load_compare(Path(run_dir)) or {}).get("presets", []), cfg.objectives)
    return remeasure(run_dir, study, cfg, rows, max_seconds=max_seconds, timer=timer, out=out)


def remeasure(run_dir: Path, study: optuna.Study, cfg: Config, rows: list[dict[str, Any]], *,
              max_seconds: float | None = None, timer: Any = None,
              out: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Time ``rows`` (from :func:`targets`) in one session; write front_latency.csv/.json; return the document.

    ``max_seconds``: the session's cap (default ``latency.max_seconds`` × the number of architectures, what the
    trials' own measurements were allowed). ``timer``: :data:`evaluators.latency_session.Timer` (default: the
    run's device, batch, threads). Nothing when the run uses no latency; one line and None when this machine
    cannot measure it."""
    from evaluators.latency_cache import LatencyCache
    from evaluators.latency_gate import MeasureGate, user_lock_dir
    from evaluators.latency_protocol import ReferenceLatency, reference_key
    from evaluators.latency_service import REFERENCE_FILE
    from evaluators.latency_session import measure_session, torch_timer

    if not uses_latency(cfg) or not rows:
        return None
    reason = skip_reason(cfg)
    if reason is not None:
        out(f"front latency: not re-measured: {reason}")
        return None
    lat = cfg.latency
    batch = lat.batch_sizes[0]
    in_chans, num_classes = int(study.user_attrs.get("in_chans", 3)), int(study.user_attrs.get("num_classes", 10))
    archs: dict[str, Arch] = {r["arch"].arch_id: r["arch"] for r in rows}
    cap = max_seconds if max_seconds is not None else lat.max_seconds * len(archs)
    if not cap > 0:
        raise ValueError(f"--remeasure-seconds: must be > 0, got {cap}")
    folder = Path(lat.lock_dir) if lat.lock_dir is not None else user_lock_dir()
    references = ReferenceLatency([LatencyCache(Path(run_dir).resolve() / "latency_cache.sqlite"),
                                   LatencyCache(folder / REFERENCE_FILE)])
    key = reference_key(device=lat.device, batch=batch, input_size=next(iter(archs.values())).input_size,
                        in_chans=in_chans, num_classes=num_classes, threads=lat.threads)
    timer = timer or torch_timer(device=lat.device, batch=batch, threads=lat.threads, in_chans=in_chans,
                                 num_classes=num_classes)
    gate = MeasureGate.for_device(lat.device, lat.lock_dir) if lat.isolate else None
    out(f"front latency: timing {len(archs)} architecture(s) in one interleaved session against the reference "
        f"(≤ {cap:.0f} s, {lat.device}, batch {batch}, {lat.threads or 'default'} thread(s))")
    try:
        res = measure_session(archs, timer=timer, references=references, reference_key=key, gate=gate,
                              warmup=lat.warmup, repeats=lat.repeats, ci=lat.ci, max_seconds=cap)
    except Exception as exc:  # the export's other outputs stand; the session is an addition to them
        out(f"front latency: not re-measured: {type(exc).__name__}: {exc}")
        return None
    session = {**res["session"], "device": lat.device, "batch": batch, "threads": lat.threads,
               "protocol": lat.protocol, "gate": gate is not None}
    table = [{**{k: r[k] for k in ("kind", "name", "number", "stored_latency_ms")}, "arch_id": r["arch"].arch_id,
              **res["results"][r["arch"].arch_id], "reference_ms": session["reference_ms"],
              "measured_at": session["measured_at"]} for r in rows]
    doc = {"session": session, "rows": table}
    _write(Path(run_dir), doc)
    out(format_rows(doc))
    return doc


def _write(run_dir: Path, doc: dict[str, Any]) -> None:
    tmp = run_dir / (JSON + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(run_dir / JSON)
    with open(run_dir / (CSV + ".tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in doc["rows"]:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in COLUMNS})
    (run_dir / (CSV + ".tmp")).replace(run_dir / CSV)


def format_rows(doc: dict[str, Any]) -> str:
    """The session as text: one line per row, stored → re-measured [95% interval], then the session."""
    s = doc["session"]
    lines = []
    for r in doc["rows"]:
        stored = "—" if r["stored_latency_ms"] is None else f"{r['stored_latency_ms']:.4g}"
        lines.append(f"  {r['kind']:<6} {r['name']:<16} {r['arch_id']}  stored {stored} ms → re-measured "
                     f"{r['latency_ms']:.4g} ms [{r['lo_ms']:.4g}, {r['hi_ms']:.4g}]")
    lines.append(f"  ({s['rounds']} rounds in {s['seconds']:.1f} s, reference {s['reference']} {s['reference_ms']:.4g}"
                 f" ms, {s['measured_at']}; selection uses the stored numbers) → {CSV}")
    return "\n".join(lines)


def load_front_latency(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/front_latency.json`` if an export wrote it, else None."""
    path = Path(run_dir) / JSON
    return json.loads(path.read_text()) if path.is_file() else None


def check_budget(doc: dict[str, Any] | None, cfg: Config, best: FrozenTrial | None) -> str | None:
    """One line when the selected best's re-measured interval lies wholly above ``select.max_latency_ms``."""
    bound = cfg.select.max_latency_ms
    if doc is None or best is None or bound is None:
        return None
    row = next((r for r in doc["rows"] if r["number"] == best.number), None)
    if row is None or row["lo_ms"] <= bound:
        return None
    return (f"best.yaml: trial {best.number}'s re-measured latency {row['latency_ms']:.4g} ms "
            f"[{row['lo_ms']:.4g}, {row['hi_ms']:.4g}] is above select.max_latency_ms {bound:g} (selected on its "
            f"stored {row['stored_latency_ms']:.4g} ms)")
