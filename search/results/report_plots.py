"""The figures of ``nas report``: each one twice, as a plotly figure (HTML) and a matplotlib PNG.

Pareto projections (accuracy against each cost metric, labelled and scaled by the metric table; front
and presets overlaid), optimisation
history (accuracy per trial, best so far, hypervolume of the front so far), fANOVA parameter
importances per objective (Hutter et al. 2014, Optuna's evaluator, seeded), parallel coordinates of
the choices (Optuna's), and trial states and durations.
"""
from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from evaluators import METRICS, get_metric

from ..pareto import REFERENCE, hypervolume, normalise, reference_point
from .axes import log_x_axis
from .compare import to_minimise

if TYPE_CHECKING:
    from .report import RunView

STATE_COLOURS = {"COMPLETE": "#2ca02c", "PRUNED": "#ff7f0e", "FAIL": "#d62728", "RUNNING": "#1f77b4",
                 "WAITING": "#7f7f7f"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def value(t: FrozenTrial | dict, key: str, objectives: list[str]) -> float | None:
    """An objective or side metric of a trial (or of a preset row), scaled for plotting."""
    if isinstance(t, dict):
        v = t.get(key)
    elif key in objectives and t.values is not None:
        v = t.values[objectives.index(key)]
    else:
        v = t.user_attrs.get(key)
    return None if v is None else float(v) / get_metric(key).scale


def cost_axes(view: RunView) -> list[str]:
    """The objectives after accuracy, then every other limit-able "min" metric some complete trial has."""
    keys = list(view.objectives[1:])
    return keys + [m.name for m in METRICS.values() if m.limit and m.direction == "min" and m.name not in keys
                   and any(value(t, m.name, view.objectives) is not None for t in view.complete)]


def _pareto_series(view: RunView, key: str) -> dict[str, tuple[list, list, list]]:
    obj = view.objectives
    front_ids = {t.number for t in view.front}
    series: dict[str, tuple[list, list, list]] = {}
    for name, trials in (("trials", [t for t in view.complete if t.number not in front_ids]),
                         ("Pareto front", sorted(view.front, key=lambda t: value(t, key, obj) or 0.0))):
        pts = [(value(t, key, obj), value(t, "val_acc", obj), f"#{t.number} {t.user_attrs.get('arch_id', '')}")
               for t in trials if value(t, key, obj) is not None]
        series[name] = ([p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts])
    for dominated in (True, False):
        rows = [r for r in view.presets if r.get("status") == "ok" and bool(r.get("dominated_by")) == dominated
                and r.get(key) is not None]
        label = "presets dominated by the front" if dominated else "presets not dominated"
        series[label] = ([value(r, key, obj) for r in rows], [r["val_acc"] for r in rows], [r["name"] for r in rows])
    return series


REMEASURED_SERIES = "re-measured at export (95% CI)"


def remeasured_series(view: RunView, key: str) -> tuple[list, list, list, list, list]:
    """``x, y, text, minus, plus`` of the rows of ``front_latency.json`` on the ``latency_ms`` axis (empty on any
    other axis or without the file): the re-measured latency, the accuracy beside it (the trial's or the preset's
    stored one), and the distances to the interval's ends, for error bars."""
    doc = view.front_latency
    if key != "latency_ms" or not doc:
        return [], [], [], [], []
    scale = get_metric(key).scale
    acc = {("trial", str(t.number)): t.values[0] for t in view.complete}
    acc.update({("preset", r["name"]): r.get("val_acc") for r in view.presets if r.get("status") == "ok"})
    x, y, text, minus, plus = [], [], [], [], []
    for r in doc["rows"]:
        kind, name = ("preset", r["name"]) if r["kind"] == "preset" else ("trial", str(r["number"]))
        if acc.get((kind, name)) is None:
            continue
        x.append(r["latency_ms"] / scale)
        y.append(acc[(kind, name)])
        text.append(f"{r['name']} {r['arch_id']} (re-measured)")
        minus.append((r["latency_ms"] - r["lo_ms"]) / scale)
        plus.append((r["hi_ms"] - r["latency_ms"]) / scale)
    return x, y, text, minus, plus


_STYLE = {"trials": ("#9e9e9e", "circle", 7), "Pareto front": ("#d62728", "circle", 10),
          "presets dominated by the front": ("#1f77b4", "diamond-open", 12),
          "presets not dominated": ("#1f77b4", "diamond", 12)}


def pareto_figure(view: RunView) -> Any:
    from plotly.subplots import make_subplots

    keys = cost_axes(view)
    fig = make_subplots(rows=1, cols=len(keys), subplot_titles=[get_metric(k).label for k in keys],
                        horizontal_spacing=0.06)
    for col, key in enumerate(keys, start=1):
        for name, (x, y, text) in _pareto_series(view, key).items():
            if not x:
                continue
            colour, symbol, size = _STYLE[name]
            fig.add_scatter(x=x, y=y, text=text, mode="markers+text" if name.startswith("presets") else "markers",
                            textposition="top center", name=name, legendgroup=name, showlegend=col == 1,
                            marker=dict(color=colour, symbol=symbol, size=size),
                            hovertemplate="%{text}<br>%{x:.4g}, acc %{y:.4f}<extra></extra>", row=1, col=col)
        x, y, text, minus, plus = remeasured_series(view, key)
        if x:
            fig.add_scatter(x=x, y=y, text=text, mode="markers", name=REMEASURED_SERIES, showlegend=True,
                            marker=dict(color="#000000", symbol="x-thin-open", size=9, line=dict(width=1.5)),
                            error_x=dict(type="data", symmetric=False, array=plus, arrayminus=minus, width=3),
                            hovertemplate="%{text}<br>%{x:.4g} ms, acc %{y:.4f}<extra></extra>", row=1, col=col)
        xs = [v for x, _, _ in _pareto_series(view, key).values() for v in x if v and v > 0]
        xs += [v for v in x if v > 0]
        fig.update_xaxes(title_text=get_metric(key).label, type="log" if _log_axis(key, xs) else "linear",
                         row=1, col=col)
    fig.update_yaxes(title_text=get_metric("val_acc").label, row=1, col=1)
    fig.update_layout(height=430, margin=dict(t=40, b=40, l=50, r=20), legend=dict(orientation="h", y=-0.2))
    return fig


def pareto_png(view: RunView, path: Path) -> None:
    plt = _plt()
    keys = cost_axes(view)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.2), squeeze=False)
    mpl_marker = {"circle": "o", "diamond": "D", "diamond-open": "D"}
    for ax, key in zip(axes[0], keys):
        for name, (x, y, text) in _pareto_series(view, key).items():
            if not x:
                continue
            colour, symbol, size = _STYLE[name]
            face = "none" if symbol.endswith("-open") else colour
            ax.scatter(x, y, s=size * 3, marker=mpl_marker[symbol], facecolors=face, edgecolors=colour, label=name)
            if name.startswith("presets"):
                for xi, yi, ti in zip(x, y, text):
                    ax.annotate(ti, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
        x, y, _, minus, plus = remeasured_series(view, key)
        if x:
            ax.errorbar(x, y, xerr=[minus, plus], fmt="x", color="k", ms=6, capsize=3, label=REMEASURED_SERIES)
            ax.legend(loc="best", fontsize=8)
        ax.set_xlabel(get_metric(key).label)
        ax.set_ylabel(get_metric("val_acc").label)
        xs = [v for x, _, _ in _pareto_series(view, key).values() for v in x if v and v > 0]
        xs += [v for v in x if v > 0]
        if _log_axis(key, xs):
            log_x_axis(ax, xs)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best", fontsize=8)
    _save(fig, path)


def _log_axis(key: str, xs: list[float]) -> bool:
    """Metrics marked ``log`` (the counts) on a log axis; others too when they span more than 20×."""
    return bool(xs) and (get_metric(key).log or max(xs) / min(xs) > 20)


def history(view: RunView) -> dict[str, list]:
    """Per complete trial in number order: accuracy, best accuracy so far, and the normalised hypervolume of
    the front so far (each objective scaled to [0, 1] over the complete trials, best = 0; reference 1.1 on
    every axis; divided by 1.1^k so that 1 would be a single trial best in everything)."""
    trials = sorted(view.complete, key=lambda t: t.number)
    if not trials:
        return {"number": [], "val_acc": [], "best": [], "hypervolume": []}
    acc = [t.values[0] for t in trials]
    scaled = normalise(np.array([to_minimise(t.values, view.objectives) for t in trials]))
    ref = reference_point(len(view.objectives))
    box = REFERENCE ** len(view.objectives)
    return {"number": [t.number for t in trials], "val_acc": acc, "best": list(np.maximum.accumulate(acc)),
            "hypervolume": [hypervolume(scaled[:i + 1], ref) / box for i in range(len(trials))]}


def history_figure(view: RunView) -> Any:
    from plotly.subplots import make_subplots

    h = history(view)
    fig = make_subplots(rows=1, cols=2,
                        subplot_titles=[get_metric("val_acc").label, "normalised hypervolume of the front so far"])
    fig.add_scatter(x=h["number"], y=h["val_acc"], mode="markers", name="trial", row=1, col=1)
    fig.add_scatter(x=h["number"], y=h["best"], mode="lines", name="best so far", row=1, col=1)
    fig.add_scatter(x=h["number"], y=h["hypervolume"], mode="lines+markers", name="hypervolume", row=1, col=2)
    fig.update_xaxes(title_text="trial number")
    fig.update_layout(height=380, margin=dict(t=40, b=40, l=50, r=20))
    return fig


def history_png(view: RunView, path: Path) -> None:
    plt = _plt()
    h = history(view)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    a.scatter(h["number"], h["val_acc"], s=14, c="0.4", label="trial")
    a.step(h["number"], h["best"], where="post", c="tab:red", label="best so far")
    a.set_xlabel("trial number")
    a.set_ylabel(get_metric("val_acc").label)
    a.legend(loc="lower right")
    b.plot(h["number"], h["hypervolume"], marker="o", ms=3)
    b.set_xlabel("trial number")
    b.set_ylabel("normalised hypervolume so far")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    _save(fig, path)


def importances(view: RunView) -> dict[str, dict[str, float]]:
    """fANOVA importance of each parameter for each objective (``{}`` when it cannot be computed:
    fewer than two complete trials, or no parameter that varies in all of them)."""
    import optuna

    out: dict[str, dict[str, float]] = {}
    if len(view.complete) < 2:
        return out
    for i, name in enumerate(view.objectives):
        try:
            out[name] = optuna.importance.get_param_importances(
                view.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                target=lambda t, i=i: t.values[i])
        except (ValueError, RuntimeError):
            return {}
    return out if any(out.values()) else {}


def importance_figure(imp: dict[str, dict[str, float]]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    params = sorted({p for v in imp.values() for p in v})
    for name, v in imp.items():
        fig.add_bar(y=params, x=[v.get(p, 0.0) for p in params], orientation="h", name=name)
    fig.update_layout(barmode="group", height=max(300, 60 + 28 * len(params) * max(1, len(imp)) // 2),
                      xaxis_title="fANOVA importance", margin=dict(t=30, b=40, l=120, r=20))
    return fig


def importance_png(imp: dict[str, dict[str, float]], path: Path) -> None:
    plt = _plt()
    params = sorted({p for v in imp.values() for p in v})
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.45 * len(params) * max(1, len(imp)) / 2))
    h = 0.8 / max(1, len(imp))
    for k, (name, v) in enumerate(imp.items()):
        ax.barh(np.arange(len(params)) + k * h, [v.get(p, 0.0) for p in params], height=h, label=name)
    ax.set_yticks(np.arange(len(params)) + 0.4 - h / 2, params)
    ax.set_xlabel("fANOVA importance")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    _save(fig, path)


def parallel_figure(view: RunView) -> Any:
    import optuna

    fig = optuna.visualization.plot_parallel_coordinate(view.study, target=lambda t: t.values[0],
                                                        target_name="val_acc")
    return fig.update_layout(height=440)  # an explicit height: the page's divs have none to fill


def parallel_png(view: RunView, path: Path) -> None:
    import optuna

    plt = _plt()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna.visualization.matplotlib is marked experimental
        ax = optuna.visualization.matplotlib.plot_parallel_coordinate(view.study, target=lambda t: t.values[0],
                                                                      target_name="val_acc")
    ax.figure.set_size_inches(10, 4.5)
    _save(ax.figure, path)
    plt.close("all")


def durations(view: RunView) -> list[tuple[int, str, float, str]]:
    """``(number, state, seconds, arch_id)`` per trial; a RUNNING trial counts until now."""
    now = dt.datetime.now()
    rows = []
    for t in view.trials:
        if t.datetime_start is None:
            secs = 0.0
        else:
            secs = ((t.datetime_complete or now) - t.datetime_start).total_seconds()
        rows.append((t.number, t.state.name, secs, t.user_attrs.get("arch_id", "")))
    return rows


def states_figure(view: RunView) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    rows = durations(view)
    for state in sorted({r[1] for r in rows}):
        sel = [r for r in rows if r[1] == state]
        fig.add_bar(x=[r[0] for r in sel], y=[r[2] for r in sel], name=f"{state} ({len(sel)})",
                    marker_color=STATE_COLOURS.get(state, "#000000"), text=[r[3] for r in sel],
                    hovertemplate="#%{x} %{text}<br>%{y:.1f} s<extra></extra>")
    fig.update_layout(height=330, xaxis_title="trial number", yaxis_title="duration (s)",
                      margin=dict(t=30, b=40, l=50, r=20))
    return fig


def timeline_figure(view: RunView) -> Any:
    import optuna

    fig = optuna.visualization.plot_timeline(view.study)
    return fig.update_layout(height=min(900, 200 + 14 * len(view.trials)))


def states_png(view: RunView, path: Path) -> None:
    plt = _plt()
    rows = durations(view)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6), gridspec_kw={"width_ratios": [1, 3]})
    names = [s.name for s in TrialState if any(r[1] == s.name for r in rows)]
    a.bar(names, [sum(r[1] == n for r in rows) for n in names], color=[STATE_COLOURS.get(n, "k") for n in names])
    a.set_ylabel("trials")
    a.tick_params(axis="x", rotation=30)
    b.bar([r[0] for r in rows], [r[2] for r in rows], color=[STATE_COLOURS.get(r[1], "k") for r in rows])
    b.set_xlabel("trial number")
    b.set_ylabel("duration (s)")
    for ax in (a, b):
        ax.grid(alpha=0.3, axis="y")
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    plt = _plt()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
