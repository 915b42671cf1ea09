"""Re-derive a run's outputs from its Optuna storage alone.

Writes into the run folder: ``trials.csv`` (one row per trial: number, state, arch_id, the
objectives, every other metric of the table some trial recorded, duration, failure reason),
``pareto/<arch_id>.yaml`` for the Pareto front (each architecture once: its earliest trial), ``best.yaml``
by the config's ``select`` rule, ``pareto.png`` and ``summary.json``; when the run uses latency,
``front_latency.csv``/``.json``: the front, the best and the compared presets timed again in one session
(:mod:`.front_latency`). Selection and the front use the stored numbers.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from evaluators import get_metric, list_metrics
from space import from_yaml

from ..config import Config
from ..errors import ConfigError
from ..faults import fault_summary
from ..limits import TIE_BREAK
from .selection import select_best, unique_archs

HEAD = ("number", "state", "arch_id")
TAIL = ("duration_s", "datetime_start", "fail_reason", "pruned_reason")


def pruned_reason(t: FrozenTrial) -> str:
    """Why a PRUNED trial was not trained to the end ('' for any other state): screened out by the screening metric
    (``screened_out``), over a hard limit (``over_limit``) or stopped by the scheduler at an epoch."""
    if t.state != TrialState.PRUNED:
        return ""
    attrs = t.user_attrs
    if "screened_out" in attrs:
        return f"screened out: {attrs['screened_out']}"
    if "over_limit" in attrs:
        return f"over a limit: {attrs['over_limit']}"
    return f"stopped at epoch {attrs['pruned_at_epoch']}" if "pruned_at_epoch" in attrs else ""


def metric_columns(objectives: list[str], recorded: list[dict[str, Any]]) -> list[str]:
    """The objectives, then every other metric of the table present in one of the ``recorded`` mappings."""
    seen = {k for r in recorded for k in r}
    return [*objectives, *(m for m in list_metrics() if m not in objectives and m in seen)]


def columns(trials: list[FrozenTrial], objectives: list[str]) -> list[str]:
    """``trials.csv``'s header: number, state, arch_id, the metric columns, duration, start, failure reason and
    pruned reason (:func:`pruned_reason`)."""
    return [*HEAD, *metric_columns(objectives, [t.user_attrs for t in trials]), *TAIL]


def open_run(run_dir: Path, storage: optuna.storages.BaseStorage | None = None) -> tuple[optuna.Study, Config]:
    """The study and config of a run folder (storage from run.json, ``study.db`` or NAS_STORAGE_URL)."""
    from ..storage import make_storage

    run_dir = Path(run_dir)
    meta_path = run_dir / "run.json"
    if not meta_path.is_file():
        raise ConfigError(f"RUN_DIR: {str(run_dir)!r} is not a run folder (no run.json)")
    meta = json.loads(meta_path.read_text())
    if storage is None:
        url = meta["storage"]
        if url == "env:NAS_STORAGE_URL":
            url = os.environ.get("NAS_STORAGE_URL") or ""
            if not url:
                raise ConfigError("NAS_STORAGE_URL: the run used it for its storage; set it again to export")
        elif (run_dir / "study.db").is_file():
            url = f"sqlite:///{(run_dir / 'study.db').resolve()}"
        storage = make_storage(url)
    study = optuna.load_study(study_name=meta["study_name"], storage=storage)
    cfg = Config.model_validate(study.user_attrs["config"])
    return study, cfg


def trial_row(t: FrozenTrial, objectives: list[str], metrics: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"number": t.number, "state": t.state.name, "arch_id": t.user_attrs.get("arch_id", "")}
    for key in metrics:
        row[key] = t.user_attrs.get(key, "")
    if t.values is not None:
        row.update(dict(zip(objectives, t.values)))
    row["duration_s"] = f"{t.duration.total_seconds():.2f}" if t.duration is not None else ""
    row["datetime_start"] = t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else ""
    row["fail_reason"] = t.user_attrs.get("fail_reason", "") if t.state != TrialState.COMPLETE else ""
    row["pruned_reason"] = pruned_reason(t)
    return row


def export_run(run_dir: Path, *, storage: optuna.storages.BaseStorage | None = None,
               out: Callable[[str], None] = print, onnx: bool = False, remeasure: bool = True,
               remeasure_seconds: float | None = None) -> dict[str, Any]:
    """Write trials.csv, pareto/, best.yaml, pareto.png and summary.json; return the summary.

    ``onnx``: also ``pareto/<arch_id>.onnx`` beside each front YAML, with seeded untrained weights (for
    shapes and latency; ``nas onnx ARCH --weights model.pt`` exports a retrained one). ``remeasure`` (and the
    config's ``latency.remeasure_front``): time the front again (:func:`.front_latency.remeasure`, capped at
    ``remeasure_seconds``)."""
    run_dir = Path(run_dir)
    study, cfg = open_run(run_dir, storage)
    trials = study.get_trials(deepcopy=False)
    objectives = cfg.objectives
    header = columns(trials, objectives)
    with open(run_dir / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        for t in trials:
            w.writerow(trial_row(t, objectives, header[len(HEAD):-len(TAIL)]))
    complete = unique_archs([t for t in trials if t.state == TrialState.COMPLETE])
    front = unique_archs(study.best_trials) if complete else []
    pareto = run_dir / "pareto"
    pareto.mkdir(exist_ok=True)
    for old in [*pareto.glob("*.yaml"), *pareto.glob("*.onnx")]:
        old.unlink()
    for t in front:
        arch = from_yaml(t.user_attrs["arch_yaml"])
        (pareto / f"{arch.arch_id}.yaml").write_text(arch.to_yaml())
        if onnx:
            from space.onnx_export import export_arch

            export_arch(arch, num_classes=int(study.user_attrs.get("num_classes", 10)),
                        in_chans=int(study.user_attrs.get("in_chans", 3)), out=pareto / f"{arch.arch_id}.onnx")
    best = select_best(trials, cfg)
    if best is not None:
        (run_dir / "best.yaml").write_text(best.user_attrs["arch_yaml"])
    elif (run_dir / "best.yaml").exists():
        (run_dir / "best.yaml").unlink()
    timed = None
    if remeasure and cfg.latency.remeasure_front:
        from .front_latency import remeasure_run

        timed = remeasure_run(run_dir, study, cfg, max_seconds=remeasure_seconds, out=out)
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary = {
        "study_name": study.study_name, "objectives": objectives,
        "directions": cfg.directions, "n_trials": len(trials),
        "metrics": {o: {"label": get_metric(o).label, "unit": get_metric(o).unit} for o in objectives},
        "states": {k: v for k, v in states.items() if v},
        "front": [{"number": t.number, "arch_id": t.user_attrs.get("arch_id"),
                   **dict(zip(objectives, t.values))} for t in front],
        "best": None if best is None else {"number": best.number, "arch_id": best.user_attrs.get("arch_id"),
                                            **dict(zip(objectives, best.values))},
        "select": cfg.select.model_dump(),
        "faults": fault_summary(trials),
        "front_latency": None if timed is None else {"file": "front_latency.csv", **timed["session"]},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if complete:
        plot_front(run_dir / "pareto.png", complete, front, objectives)
    out(f"exported {len(trials)} trials ({summary['states']}); front of {len(front)} (by the stored values) "
        f"→ {pareto}/")
    if best is not None:
        vals = ", ".join(f"{k}={v:.4g}" for k, v in zip(objectives, best.values))
        out(f"best (rule: highest val_acc within select budgets, on the stored values): trial {best.number} "
            f"{best.user_attrs.get('arch_id')} {vals} → {run_dir / 'best.yaml'}")
        from .front_latency import check_budget

        warning = check_budget(timed, cfg, best)
        if warning:
            out(warning)
    else:
        out("no complete trial satisfies the select budgets; best.yaml not written")
    return summary


def plot_front(path: Path, complete: list[FrozenTrial], front: list[FrozenTrial], objectives: list[str]) -> None:
    """Accuracy against each cost objective (labels, scales and log axes from the metric table), front highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    costs = [o for o in objectives if o != "val_acc"] or [TIE_BREAK]  # always recorded: the select rule needs it
    fig, axes = plt.subplots(1, len(costs), figsize=(5.5 * len(costs), 4.2), squeeze=False)
    front_ids = {t.number for t in front}

    def cost(t: FrozenTrial, key: str) -> float:
        v = t.values[objectives.index(key)] if key in objectives else t.user_attrs.get(key, float("nan"))
        return float(v) / get_metric(key).scale

    for ax, key in zip(axes[0], costs):
        others = [t for t in complete if t.number not in front_ids]
        ax.scatter([cost(t, key) for t in others], [t.values[0] for t in others], c="0.6", s=18, label="trials")
        pts = sorted(front, key=lambda t: cost(t, key))
        ax.scatter([cost(t, key) for t in pts], [t.values[0] for t in pts], c="tab:red", s=30,
                   label="Pareto front")
        ax.set_xlabel(get_metric(key).label)
        ax.set_ylabel(get_metric("val_acc").label)
        if get_metric(key).log:
            from .axes import log_x_axis

            log_x_axis(ax, [cost(t, key) for t in complete])
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
