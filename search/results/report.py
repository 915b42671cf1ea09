"""``nas report RUN_DIR``: one self-contained HTML page and PNGs, from a run's storage alone.

Writes ``RUN_DIR/report/report.html`` (plotly, with plotly.js embedded once in the page's head, so
it opens offline) and beside it ``pareto.png``, ``history.png``, ``importance.png``, ``parallel.png`` and
``trials.png`` (matplotlib). Contents: the Pareto projections (accuracy against each cost metric: the
objectives, then MACs, FLOPs...; front highlighted; presets from ``nas compare`` overlaid when
``compare.json`` exists), the optimisation history and hypervolume, fANOVA parameter importances per objective, parallel
coordinates of the choices, trial states and durations, and a table of the front with each
architecture's YAML and its ``nas show`` summary (params, fvcore FLOPs, conv+linear MACs, layers). When the export
wrote ``front_latency.json`` (:mod:`.front_latency`), the latency plot and the front and preset tables also show
each architecture's re-measured latency with its 95% interval (error bars, a column).

It reads only the storage (:func:`search.results.export.open_run`) plus ``compare.json`` and
``front_latency.json``, so it works on a
finished run, a resumed one and one still running (RUNNING trials are shown with their time so far).
"""
from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from evaluators import get_metric

from ..config import Config
from . import report_plots as rp
from .compare import front_trials, load_compare
from .export import open_run, pruned_reason
from .front_latency import load_front_latency

REMEASURED = "latency (re-measured, 95% CI)"

PNGS = ("pareto.png", "history.png", "importance.png", "parallel.png", "trials.png")


@dataclass
class RunView:
    """What the report shows: the study, its config and trials, the front, and compared presets."""

    run_dir: Path
    study: optuna.Study
    cfg: Config
    trials: list[FrozenTrial]
    front: list[FrozenTrial]
    presets: list[dict[str, Any]] = field(default_factory=list)
    front_latency: dict[str, Any] | None = None

    def remeasured(self, kind: str, key: str) -> dict[str, Any] | None:
        """The ``front_latency.json`` row of a trial's architecture (``kind`` ``trial``, ``key`` its arch_id: a
        repeat of a front architecture shares its row) or of a preset (``key`` its name)."""
        for r in (self.front_latency or {}).get("rows", []):
            if (r["kind"] == "preset") == (kind == "preset") and r["arch_id" if kind == "trial" else "name"] == key:
                return r
        return None

    @property
    def objectives(self) -> list[str]:
        return self.cfg.objectives

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE]


def load_view(run_dir: Path, storage: optuna.storages.BaseStorage | None = None) -> RunView:
    study, cfg = open_run(Path(run_dir), storage)
    compare = load_compare(Path(run_dir)) or {}
    return RunView(Path(run_dir), study, cfg, study.get_trials(deepcopy=False), front_trials(study),
                   compare.get("presets", []), load_front_latency(Path(run_dir)))


def arch_summary(t: FrozenTrial, study: optuna.Study) -> dict[str, Any]:
    """What ``nas show`` prints for a trial's architecture: params, fvcore FLOPs, MACs, the layer table."""
    from space import build_model, from_yaml
    from space.complexity import count_complexity, layer_table

    arch = from_yaml(t.user_attrs["arch_yaml"])
    num_classes = int(study.user_attrs.get("num_classes", 10))
    in_chans = int(study.user_attrs.get("in_chans", 3))
    model = build_model(arch, num_classes=num_classes, in_chans=in_chans)
    c = count_complexity(model, input_size=arch.input_size, in_chans=in_chans)
    return {"arch_id": arch.arch_id, "yaml": arch.to_yaml(), "num_classes": num_classes, "in_chans": in_chans,
            "input_size": arch.input_size, **c,
            "layers": layer_table(model, input_size=arch.input_size, in_chans=in_chans)}


def build_report(run_dir: Path, *, storage: optuna.storages.BaseStorage | None = None, out_dir: Path | None = None,
                 out: Callable[[str], None] = print) -> Path:
    """Write the HTML report and the PNGs; return the HTML path."""
    view = load_view(Path(run_dir), storage)
    out_dir = Path(out_dir) if out_dir is not None else view.run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in PNGS:
        (out_dir / old).unlink(missing_ok=True)
    h = _Html()
    sections = [_header(view)]
    if view.complete:
        sections += _result_sections(view, h, out_dir)
    else:
        sections.append(_text("Pareto front", "No complete trial yet."))
    rp.states_png(view, out_dir / "trials.png")
    sections += [h.section("Trial states and durations", "Duration per trial, coloured by state (a RUNNING "
                           "trial counts until now).", rp.states_figure(view)),
                 h.section("Timeline", "", rp.timeline_figure(view)), _trials_table(view)]
    path = out_dir / "report.html"
    path.write_text(_page(view, sections))
    pngs = [p for p in PNGS if (out_dir / p).is_file()]
    out(f"report: {len(view.trials)} trials, front of {len(view.front)}, {len(view.presets)} compared preset(s) "
        f"→ {path} (+ {', '.join(pngs)})")
    return path


def _result_sections(view: RunView, h: _Html, out_dir: Path) -> list[str]:
    """Everything that needs complete trials: Pareto plots, tables, history, importances, choices."""
    imp = rp.importances(view)
    rp.pareto_png(view, out_dir / "pareto.png")
    rp.history_png(view, out_dir / "history.png")
    rp.parallel_png(view, out_dir / "parallel.png")
    if imp:
        rp.importance_png(imp, out_dir / "importance.png")
        importance = h.section("Parameter importances", "fANOVA importance (Hutter et al. 2014) of each choice "
                               "for each objective over the complete trials; choices that only some trials have "
                               "are left out.", rp.importance_figure(imp))
    else:
        importance = _text("Parameter importances", "Not computable yet: it needs at least two complete trials "
                           "and a choice that varies among them.")
    return [
        h.section("Pareto front", _pareto_caption(view), rp.pareto_figure(view)),
        _front_table(view), _compare_table(view),
        h.section("Optimisation history", "Validation accuracy of every complete trial and the best so far; "
                  "hypervolume of the front so far, with every objective scaled to [0, 1] over the complete "
                  "trials (best = 0), reference point 1.1 on every axis, divided by 1.1^k (1 = one trial best "
                  "in every objective).", rp.history_figure(view)),
        importance,
        h.section("Choices (parallel coordinates)", "One line per complete trial, coloured by validation accuracy.",
                  rp.parallel_figure(view)),
    ]


class _Html:
    """Figures as HTML fragments; plotly.js itself goes once into the page's ``<head>`` (see :func:`_page`)."""

    def section(self, title: str, caption: str, fig: Any) -> str:
        body = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        return f"<h2>{html.escape(title)}</h2><p>{html.escape(caption)}</p>\n{body}"


def _text(title: str, text: str) -> str:
    return f"<h2>{html.escape(title)}</h2><p>{html.escape(text)}</p>"


def _fmt(key: str, v: Any) -> str:
    """A metric's value as the metric table formats it."""
    if v is None or v == "":
        return ""
    return html.escape(get_metric(key).format(v))


def _shown(key: str, v: Any) -> str:
    """params/FLOPs/MACs as ``nas show`` prints them (exact params; millions of FLOPs and MACs)."""
    return f"{int(float(v)):,}" if key == "params" else f"{float(v) / 1e6:,.2f} M"


def _header(view: RunView) -> str:
    cfg = view.cfg
    states = {s.name: sum(t.state == s for t in view.trials) for s in TrialState}
    arrows = ", ".join(f"{o} {'↑' if get_metric(o).direction == 'max' else '↓'}" for o in view.objectives)
    meta = json.loads((view.run_dir / "run.json").read_text())
    rows = [("run folder", str(view.run_dir.resolve())), ("study", view.study.study_name),
            ("storage", meta.get("storage", "")), ("objectives", arrows),
            ("data", f"{cfg.data.name}, validation fraction {cfg.data.val_fraction}"),
            ("proxy", f"{cfg.proxy.epochs} epochs, batch {cfg.proxy.batch_size}, lr {cfg.proxy.lr}, seed "
                      f"{cfg.search.seed}"),
            ("search", f"{cfg.search.sampler}, budget {cfg.search.n_trials} trials, scheduler {cfg.scheduler.name}"),
            ("trials", ", ".join(f"{k} {v}" for k, v in states.items() if v) or "none yet"),
            ("generated", time.strftime("%Y-%m-%d %H:%M:%S"))]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='meta'>{body}</table>"


def _pareto_caption(view: RunView) -> str:
    text = ("Validation accuracy against each cost; the front is non-dominated over all objectives "
            f"({', '.join(view.objectives)}), so in a 2-D projection a front point can sit below another.")
    if view.presets:
        text += (" Diamonds: presets measured by nas compare with the same proxy budget, data and seed "
                 "(filled = not dominated by the front).")
    if view.front_latency:
        s = view.front_latency["session"]
        text += (f" Black crosses on the latency axis: the front and the presets timed again in one interleaved "
                 f"session at export ({s['measured_at']}, reference {s['reference']} {s['reference_ms']:.4g} ms, "
                 f"{s['rounds']} rounds), with the 95% interval of each; the front itself and best.yaml are "
                 f"decided by the stored numbers (dots).")
    return text


def _remeasured_cell(view: RunView, kind: str, key: str) -> str:
    r = view.remeasured(kind, key)
    if r is None:
        return ""
    return html.escape(f"{r['latency_ms']:.4g} ms [{r['lo_ms']:.4g}, {r['hi_ms']:.4g}]")


def _front_table(view: RunView) -> str:
    obj = view.objectives
    extra = [REMEASURED] if view.front_latency else []
    head = "".join(f"<th>{html.escape(k)}</th>" for k in
                   ["trial", "arch_id", *obj, *extra, "params", "FLOPs", "MACs", "input", "architecture"])
    rows = []
    for t in sorted(view.front, key=lambda t: -t.values[0]):
        s = arch_summary(t, view.study)
        layers = "".join(f"<tr><td>{html.escape(str(r['name']))}</td><td>{html.escape(str(r['type']))}</td>"
                         f"<td>{'×'.join(str(x) for x in r['out_shape'])}</td><td>{r['params']:,}</td>"
                         f"<td>{r['macs'] / 1e6:,.3f}</td></tr>" for r in s["layers"])
        cmd = (f"nas show pareto/{s['arch_id']}.yaml --input-size {s['input_size']} --in-chans {s['in_chans']} "
               f"--num-classes {s['num_classes']}")
        detail = (f"<details><summary>YAML and layers</summary><pre>{html.escape(s['yaml'])}</pre>"
                  f"<p><code>{html.escape(cmd)}</code></p><table class='small'><tr><th>layer</th><th>type</th>"
                  f"<th>output</th><th>params</th><th>MACs (M)</th></tr>{layers}</table></details>")
        cells = [str(t.number), f"<code>{s['arch_id']}</code>", *(_fmt(o, v) for o, v in zip(obj, t.values)),
                 *([_remeasured_cell(view, "trial", s["arch_id"])] if extra else []), _shown("params", s["params"]),
                 _shown("flops", s["flops"]), _shown("macs", s["macs"]),
                 f"{s['in_chans']}×{s['input_size']}²", detail]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f"<h2>The front ({len(view.front)} architectures)</h2><p>Each architecture is also in "
            f"<code>pareto/&lt;arch_id&gt;.yaml</code> (<code>nas export</code>). Params/FLOPs/MACs as "
            f"<code>nas show</code> prints them.</p><table><tr>{head}</tr>{''.join(rows)}</table>")


def _compare_table(view: RunView) -> str:
    if not view.presets:
        return ("<h2>Presets</h2><p>None compared yet: <code>nas compare RUN_DIR --presets wrn-16-1,wrn-16-2</code> "
                "measures hand-designed networks under the same proxy budget and overlays them here.</p>")
    obj = view.objectives
    extra = [REMEASURED] if view.front_latency else []
    head = "".join(f"<th>{k}</th>" for k in ["preset", "arch_id", *obj, *extra, "params",
                                             "dominated by front trials"])
    rows = []
    for r in view.presets:
        if r.get("status") != "ok":
            rows.append(f"<tr><td>{html.escape(r['name'])}</td><td><code>{r['arch_id']}</code></td>"
                        f"<td colspan='{len(obj) + len(extra) + 2}'>failed: {html.escape(r.get('reason', ''))}"
                        "</td></tr>")
            continue
        by = ", ".join(f"#{n}" for n in r.get("dominated_by", [])) or "not dominated"
        cells = [html.escape(r["name"]), f"<code>{r['arch_id']}</code>", *(_fmt(o, r.get(o)) for o in obj),
                 *([_remeasured_cell(view, "preset", r["name"])] if extra else []),
                 _shown("params", r["params"]) if r.get("params") is not None else "", by]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<h2>Presets (nas compare)</h2><p>Trained with the run's proxy budget, data split and seed; latency "
            "measured like the trials' (the run's latency cache and settings).</p>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>")


def _trials_table(view: RunView) -> str:
    obj = view.objectives
    head = "".join(f"<th>{k}</th>" for k in ["trial", "state", "arch_id", *obj, "duration (s)", "note"])
    dur = {n: s for n, _, s, _ in rp.durations(view)}
    rows = []
    for t in view.trials:
        vals = [_fmt(o, v) for o, v in zip(obj, t.values)] if t.values else [""] * len(obj)
        note = t.user_attrs.get("fail_reason", "") if t.state == TrialState.FAIL else ""
        if t.state == TrialState.PRUNED:
            note = pruned_reason(t)
        if "cached_from" in t.user_attrs:
            note = f"same architecture as trial {t.user_attrs['cached_from']}"
        colour = rp.STATE_COLOURS.get(t.state.name, "#000")
        cells = [str(t.number), f"<span style='color:{colour}'>{t.state.name}</span>",
                 f"<code>{html.escape(str(t.user_attrs.get('arch_id', '')))}</code>", *vals,
                 f"{dur[t.number]:.1f}", html.escape(str(note))]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<h2>All trials</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f4f4f4}table.meta th{width:9em}pre{background:#f8f8f8;
padding:6px;font-size:12px}table.small{font-size:12px}h2{margin-top:1.6em;border-bottom:1px solid #ccc}"""


def _page(view: RunView, sections: list[str]) -> str:
    """The whole page, plotly.js inlined in ``<head>`` (offline: nothing is fetched)."""
    from plotly.offline import get_plotlyjs

    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>nas report: "
            f"{html.escape(view.study.study_name)}</title><style>{CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>nas report: {html.escape(view.study.study_name)}</h1>{''.join(sections)}</body></html>")
