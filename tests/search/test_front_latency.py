"""front_latency.csv: at export the front, the best and the compared presets are timed again in one interleaved
session (one reference calibration, rounds cycling over every architecture), and the report shows the intervals."""
from __future__ import annotations

import contextlib
import csv
import json

import optuna
import pytest
import torch

from evaluators import latency_timing as lt
from evaluators.latency_protocol import REFERENCE_ROUNDS, reference_arch
from search import parse_config
from search.cli import main
from search.results import front_latency as fl
from search.results.export import export_run
from search.results.report import REMEASURED, build_report
from space import wrn

# three architectures on the front of (val_acc ↑, latency_ms ↓), one dominated trial; true ms per pass
ARCHS = [wrn(10, 1, input_size=8), wrn(10, 2, input_size=8), wrn(10, 4, input_size=8), wrn(16, 2, input_size=8)]
TRIALS = [(ARCHS[0], 0.5, 1.0), (ARCHS[1], 0.7, 2.0), (ARCHS[2], 0.9, 4.0), (ARCHS[3], 0.4, 5.0)]
PRESET = wrn(22, 1, input_size=8)
TRUE_MS = {ARCHS[0].arch_id: 1.0, ARCHS[1].arch_id: 2.5, ARCHS[2].arch_id: 3.0, ARCHS[3].arch_id: 4.0,
           PRESET.arch_id: 6.0, reference_arch(8).arch_id: 2.0}


def make_run(tmp_path, objectives=("val_acc", "latency_ms"), *, latency=None, preset=True, extra=None):
    """A run folder with a study built directly (no training): ``TRIALS`` told with their values."""
    cfg = parse_config({"name": "fl", "objectives": list(objectives),
                        "latency": {"lock_dir": str(tmp_path / "locks"), "warmup": 1, "repeats": 3,
                                    "max_seconds": 2, **(latency or {})}, **(extra or {})})
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", study_name="fl",
                                directions=[{"max": "maximize", "min": "minimize"}[d] for d in cfg.directions])
    for key, value in {"config": cfg.model_dump(mode="json"), "input_size": 8, "num_classes": 10,
                       "in_chans": 1}.items():
        study.set_user_attr(key, value)
    for arch, acc, ms in TRIALS:
        t = study.ask()
        for key, value in {"arch_id": arch.arch_id, "arch_yaml": arch.to_yaml(), "latency_ms": ms,
                           "macs": 1e6 * ms}.items():
            t.set_user_attr(key, value)
        study.tell(t, [{"val_acc": acc, "latency_ms": ms, "macs": 1e6 * ms}[o] for o in objectives])
    (tmp_path / "run.json").write_text(json.dumps({"study_name": "fl", "storage": "sqlite:///ignored"}))
    if preset:
        (tmp_path / "compare.json").write_text(json.dumps({"presets": [
            {"name": "wrn-22-1", "arch_id": PRESET.arch_id, "arch_yaml": PRESET.to_yaml(), "status": "ok",
             "val_acc": 0.6, "latency_ms": 7.0, "dominated_by": [1]},
            {"name": "broken", "arch_id": "x", "status": "failed", "reason": "too small"}]}))
    return tmp_path, study, cfg


class FakeTimer:
    """Scripted passes: each architecture's true ms × the machine's slowness, which drifts every two calls (a
    candidate round and its reference round see the same machine); logs every call's architecture."""

    def __init__(self, clock) -> None:
        self.log: list[str] = []
        self.clock = clock

    def __call__(self, arch):
        @contextlib.contextmanager
        def ctx():
            def rounds(warmup: int, repeats: int) -> list[lt.Pass]:
                slow = (1.0, 1.6, 1.2, 2.0, 1.1)[((len(self.log) + 1) // 2) % 5]  # 7 calibration calls first
                self.log.append(arch.arch_id)
                self.clock.t += 0.01
                return [lt.Pass(TRUE_MS[arch.arch_id] * slow)] * repeats
            yield rounds
        return ctx()


class Clock:
    t = 0.0

    def now(self) -> float:
        return self.t

    def preemptions(self) -> int:
        return 0


def test_one_session_calibrates_once_and_cycles_over_every_architecture(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(lt, "CLOCK", clock)
    run, study, cfg = make_run(tmp_path)
    timer, lines = FakeTimer(clock), []
    doc = fl.remeasure_run(run, study, cfg, timer=timer, out=lines.append)
    ref = reference_arch(8).arch_id
    front = {ARCHS[i].arch_id for i in (0, 1, 2)}  # trial 3 (0.4 at 5 ms) is dominated by trial 2
    timed = front | {PRESET.arch_id}
    # calibration: the reference alone, once, before anything else; then pairs (candidate, reference)
    assert timer.log[:REFERENCE_ROUNDS] == [ref] * REFERENCE_ROUNDS
    pairs = timer.log[REFERENCE_ROUNDS:]
    assert len(pairs) % 2 == 0 and all((a == ref) != (b == ref) for a, b in zip(pairs[::2], pairs[1::2]))
    cands = [a for a in pairs if a != ref]
    rounds = doc["session"]["rounds"]
    assert len(cands) == rounds * len(timed) and rounds >= 6
    # round-robin: each block of len(timed) calls visits every architecture once, the start rotating
    blocks = [cands[i:i + len(timed)] for i in range(0, len(cands), len(timed))]
    assert all(set(b) == timed for b in blocks) and blocks[0][0] != blocks[1][0]
    # the drift cancels in each pair: ratio = true ms / reference's; ms = ratio × the calibrated reference
    ref_ms = doc["session"]["reference_ms"]
    assert ref_ms == pytest.approx(2.0 * 1.6)  # median of 2 ms × (1.0, 1.6, 1.6, 1.2, 1.2, 2.0, 2.0)
    for r in doc["rows"]:
        assert r["ratio"] == pytest.approx(TRUE_MS[r["arch_id"]] / 2.0)
        assert r["lo_ms"] <= r["latency_ms"] <= r["hi_ms"]
        assert r["latency_ms"] == pytest.approx(r["ratio"] * ref_ms)
    kinds = {(r["kind"], r["name"]) for r in doc["rows"]}
    assert kinds == {("front", "#0"), ("front", "#1"), ("front", "#2"), ("preset", "wrn-22-1")}
    with open(run / fl.CSV) as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == fl.COLUMNS and len(rows) == 4
    assert all(float(r["lo_ms"]) <= float(r["latency_ms"]) <= float(r["hi_ms"]) for r in rows)
    assert {r["name"]: float(r["stored_latency_ms"]) for r in rows} == {"#0": 1.0, "#1": 2.0, "#2": 4.0,
                                                                        "wrn-22-1": 7.0}
    assert any("selection uses the stored numbers" in s for s in lines)
    # a second session finds the reference stored (run cache and the machine's file): no calibration
    again = FakeTimer(clock)
    fl.remeasure_run(run, study, cfg, timer=again, out=lines.append)
    assert again.log[:REFERENCE_ROUNDS] != [ref] * REFERENCE_ROUNDS


def test_export_measures_for_real_and_no_remeasure_writes_nothing(tmp_path, capsys):
    run, study, _ = make_run(tmp_path, preset=False)
    assert main(["export", str(run), "--no-remeasure"]) == 0
    assert not (run / fl.CSV).exists() and not (run / fl.JSON).exists()
    assert "front latency" not in capsys.readouterr().out
    assert main(["export", str(run), "--remeasure-seconds", "3"]) == 0
    out = capsys.readouterr().out
    assert "one interleaved session" in out and "on the stored values" in out
    doc = json.loads((run / fl.JSON).read_text())
    assert [r["name"] for r in doc["rows"]] == ["#0", "#1", "#2"]
    assert doc["session"]["rounds"] >= 6 and doc["session"]["reference_ms"] > 0
    assert all(0 < r["lo_ms"] <= r["latency_ms"] <= r["hi_ms"] for r in doc["rows"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["front_latency"]["file"] == fl.CSV and summary["best"]["number"] == 2  # stored values decide
    with pytest.raises(SystemExit) as bad:
        main(["export", str(run), "--remeasure-seconds", "0"])
    assert bad.value.code == 2 and "--remeasure-seconds: must be a number > 0" in capsys.readouterr().err


def test_a_run_without_latency_writes_nothing_and_says_nothing(tmp_path):
    run, _, _ = make_run(tmp_path, objectives=("val_acc", "macs"))
    lines: list[str] = []
    summary = export_run(run, out=lines.append)
    assert summary["front_latency"] is None and not (run / fl.CSV).exists()
    assert lines and not any("front latency" in s or "re-measure" in s for s in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the line printed where CUDA is absent")
def test_an_absent_device_is_skipped_with_one_line(tmp_path):
    run, _, _ = make_run(tmp_path, latency={"device": "cuda"}, extra={"ray": {"gpus_per_trial": 0.5}})
    lines: list[str] = []
    export_run(run, out=lines.append)
    said = [s for s in lines if s.startswith("front latency")]
    assert len(said) == 1 and "not re-measured" in said[0] and "cuda" in said[0].lower()
    assert not (run / fl.CSV).exists()


def test_report_shows_the_intervals_as_error_bars_and_a_column(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(lt, "CLOCK", clock)
    run, study, cfg = make_run(tmp_path)
    plain = build_report(run, out=lambda s: None).read_text()
    assert REMEASURED not in plain and '"arrayminus":[' not in plain
    doc = fl.remeasure_run(run, study, cfg, timer=FakeTimer(clock), out=lambda s: None)
    page = build_report(run, out=lambda s: None).read_text()
    assert page.count(REMEASURED) == 2  # the front table's column and the presets'
    from search.results.report import load_view
    from search.results.report_plots import REMEASURED_SERIES, pareto_figure

    fig = pareto_figure(load_view(run))
    (bars,) = [d for d in fig.data if d.name == REMEASURED_SERIES]
    by_x = {round(x, 9): (m, p) for x, m, p in zip(bars.x, bars.error_x.arrayminus, bars.error_x.array)}
    for r in doc["rows"]:
        minus, plus = by_x[round(r["latency_ms"], 9)]
        assert (r["latency_ms"] - minus, r["latency_ms"] + plus) == pytest.approx((r["lo_ms"], r["hi_ms"]))
    assert '"arrayminus":[' in page and REMEASURED_SERIES in page
