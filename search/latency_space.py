"""``nas latency-table``: a per-unit latency table for every unit a config's search space can build,
its calibration, and its validation against end-to-end measurements of random architectures.

The units are enumerated stage by stage from the space's candidate lists (block × supported order ×
norm × attention × act × width multiplier), with each stage's possible input channels (the previous
stage's widths: the same multiplier when ``width_mult`` is shared, any when it is chosen per stage)
and input resolutions (chained through the measured output resolutions). Combinations the spec
rejects are skipped. The result covers every architecture ``SearchSpace.sample`` can return (a
superset when other choices are shared across stages, which costs a few extra measurements only).
"""
from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

from space import Arch, Head, SpecError, Stage, Stem, build_model

from .config import Config
from .space_def import SearchSpace, round_width, sample_archs

Out = Callable[[str], None]


@dataclass(frozen=True)
class Problem:
    """What the table is for: image channels, classes, input resolution."""

    in_chans: int
    num_classes: int
    input_size: int


def problem_of(cfg: Config, *, input_size: int | None = None) -> Problem:
    """The config's data set dimensions (the data set is loaded once to read them)."""
    from .evaluation import load_data

    data = load_data(cfg)
    return Problem(data.in_chans, data.num_classes, input_size or data.input_size)


def _stage_choices(space: SearchSpace, i: int) -> Iterator[tuple[float, Stage]]:
    """``(width_mult, Stage)`` for every candidate combination of stage ``i`` (depth = max depth)."""
    c = space.cfg
    for block in c.block:
        for order in space._orders(block):
            for norm in c.norm:
                for attention in c.attention:
                    for act in c.act:
                        for mult in c.width_mult:
                            try:
                                yield mult, Stage(
                                    block=block, depth=max(c.depth), width=round_width(c.base_widths[i] * mult),
                                    stride=c.strides[i], norm=norm, attention=attention, act=act, order=order,
                                    block_args=c.block_args.get(block, {}), norm_args=c.norm_args.get(norm, {}),
                                    attn_args=c.attn_args.get(attention, {}))
                            except SpecError:
                                continue


def _valid(stage: Stage, in_chs: int, stem: Stem | None = None) -> bool:
    try:
        Arch(stem=stem or Stem(width=in_chs), stages=(stage,), head=Head(), input_size=1 << 12)
        return True
    except SpecError:
        return False


def _in_widths(space: SearchSpace, i: int, mult: float) -> list[int]:
    c = space.cfg
    if i == 0:
        return list(c.stem_width)
    mults = c.width_mult if "width_mult" in c.per_stage else [mult]
    return sorted({round_width(c.base_widths[i - 1] * m) for m in mults})


def build_space_table(space: SearchSpace, problem: Problem, *, device: str, batch: int, threads: int | None,
                      warmup: int, repeats: int, rounds: int = 3, protocol: str = "plain", references: Any = None,
                      max_seconds: float = 2.0, context: Callable = contextlib.nullcontext, out: Out = print) -> Any:
    """Measure every unit the space can build at ``problem.input_size`` into a new ``LatencyTable``
    (``interleaved``: against the reference, its latency looked up in ``references`` or calibrated first)."""
    from evaluators.latency import check_latency_device
    from evaluators.latency_table import LatencyTable, Unit, add_unit, calibrate_reference, machine_info, stage_units
    from space.onnx_export import OnnxExportError

    check_latency_device(device, field="--device")
    table = LatencyTable(device=device, batch=batch, in_chans=problem.in_chans, num_classes=problem.num_classes,
                         threads=threads, warmup=warmup, repeats=repeats, rounds=rounds, meta=machine_info(),
                         protocol=protocol, input_size=problem.input_size, max_seconds=max_seconds)
    if protocol == "interleaved":
        ms = calibrate_reference(table, references, context)
        out(f"reference wrn-16-1 at {problem.input_size}²: {ms:.4f} ms; every unit is timed against it")
    c = space.cfg
    counts = {"measured": 0, "skipped": 0}

    def add(unit: Unit, res: int) -> int:
        try:
            key, entry, new = add_unit(table, unit, res=res, context=context)
        except OnnxExportError:  # the whole network may still export: not a unit to skip silently
            raise
        except Exception as exc:  # a unit that cannot run cannot be sampled either (its trial would fail)
            counts["skipped"] += 1
            out(f"  skip {unit.kind} {unit.stage.block}: {type(exc).__name__}: {str(exc)[:120]}")
            return -1
        if new:
            counts["measured"] += 1
            if counts["measured"] % 25 == 0:
                out(f"  {counts['measured']} units measured ...")
        return entry["out"]

    res_in: set[int] = set()
    for _mult, stage in _stage_choices(space, 0):
        for w in c.stem_width:
            stem = Stem(width=w, norm_act=stage.order == "post")
            if _valid(stage, w, stem):
                res_in.add(add(Unit("stem", stage, w, stem=stem), problem.input_size))
    last: list[Stage] = []
    for i in range(space.num_stages):
        res_out: set[int] = set()
        for mult, stage in _stage_choices(space, i):
            usable = False
            for in_chs in _in_widths(space, i, mult):
                if not _valid(stage, in_chs):
                    continue
                usable = True
                for depth in sorted(set(c.depth)):
                    for res in sorted(r for r in res_in if r > 0):
                        r = res
                        for unit in stage_units(replace(stage, depth=depth), in_chs):
                            r = add(unit, r) if r > 0 else r
                        res_out.add(r)
            if usable and i == space.num_stages - 1:
                last.append(stage)
        res_in = res_out
    for stage in last:
        for res in sorted(r for r in res_in if r > 0):
            add(Unit("head", stage, stage.width, head=Head(dropout=c.head_dropout)), res)
    out(f"measured {counts['measured']} distinct units" + (f", skipped {counts['skipped']}" if counts["skipped"]
                                                           else ""))
    return table


def measure_arch(arch: Arch, table: Any, *, context: Callable = contextlib.nullcontext) -> float:
    """End-to-end latency (ms) of ``arch`` with the table's estimator, device, batch, threads and repeats."""
    import torch

    from evaluators.latency_table import timed

    with torch.random.fork_rng(devices=[]):
        model = build_model(arch, num_classes=table.num_classes, in_chans=table.in_chans)
    return timed(model, (table.batch, table.in_chans, arch.input_size, arch.input_size), table=table,
                 context=context)


def measure_truth(table: Any, archs: list[Arch], *, repeats: int,
                  context: Callable = contextlib.nullcontext) -> list[list[float]]:
    """Each architecture measured ``repeats`` times end to end (the whole list once per repeat, so an
    architecture's repeats are minutes apart): one list of ``repeats`` ms per architecture."""
    runs = [[measure_arch(arch, table, context=context) for arch in archs] for _ in range(repeats)]
    return [[run[i] for run in runs] for i in range(len(archs))]


def calibrate(table: Any, archs: list[Arch], *, repeats: int = 3, context: Callable = contextlib.nullcontext,
              out: Out = print) -> None:
    """Fit the table's ``scale``/``overhead_ms`` (:func:`~evaluators.latency_table.fit_overhead`) on ``archs``,
    each measured as :func:`validate` measures its ground truth: the median of ``repeats`` end-to-end
    measurements, minutes apart. (Fitted to single measurements of 8 networks, the overhead came out 0.04–0.08 ms
    high and the smallest networks were over-predicted by 10–24%; re-fitted to the medians of 3 measurements of 20
    networks, the same table predicted 19–20 of 20 within ±10% in each of the other runs: docs/latency.md.)"""
    from evaluators.latency_table import LatencyPredictor, fit_overhead

    predictor = LatencyPredictor(table, context=context)
    sums = [predictor.units_ms(a) for a in archs]
    measured = [statistics.median(v) for v in measure_truth(table, archs, repeats=repeats, context=context)]
    table.scale, table.overhead_ms = fit_overhead(sums, measured)
    table.meta["calibration"] = {"archs": len(archs), "repeats": repeats, "scale": round(table.scale, 6),
                                 "overhead_ms": round(table.overhead_ms, 6),
                                 "median_measured_over_sum": round(statistics.median(
                                     m / s for m, s in zip(measured, sums)), 4)}
    ratio = table.meta["calibration"]["median_measured_over_sum"]
    out(f"calibrated on {len(archs)} architectures (median of {repeats} measurements each): predicted = "
        f"{table.scale:.4f} × Σ units + {table.overhead_ms:.4f} ms (median measured/Σ units {ratio})")


def validate(table: Any, archs: list[Arch], *, repeats: int = 3, context: Callable = contextlib.nullcontext,
             out: Out = print) -> dict[str, float]:
    """Predict ``archs`` and compare with a repeated-median ground truth; print one row each and the summary.

    Each architecture is measured ``repeats`` times (the whole list once per repeat, so an architecture's repeats
    are minutes apart) and its ground truth is the median. The truth's own repeatability is the noise floor the
    predictor is judged against: the CV over each architecture's repeats (median and max over architectures) and
    the share of single measurements within ±10% of their own median (what the predictor could at best reach
    measured against one measurement)."""
    from evaluators.latency_table import LatencyPredictor, spearman

    predictor = LatencyPredictor(table, context=context)
    pred = [predictor.predict(arch) for arch in archs]
    per_arch = measure_truth(table, archs, repeats=repeats, context=context)
    meas = [statistics.median(v) for v in per_arch]
    out(f"{'arch_id':<14}{'units':>6}{'Σ units':>10}{'predicted':>11}{'measured':>10}{'error':>9}{'truth CV':>10}")
    cvs = [100 * statistics.pstdev(v) / statistics.fmean(v) for v in per_arch]
    for arch, p, m, cv in zip(archs, pred, meas, cvs):
        rows = predictor.breakdown(arch)
        out(f"{arch.arch_id:<14}{len(rows):>6}{sum(ms for _, ms in rows):>10.4f}{p:>11.4f}{m:>10.4f}"
            f"{100 * (p - m) / m:>8.1f}%{cv:>9.1f}%")
    errors = [abs(p - m) / m for p, m in zip(pred, meas)]
    within = sum(e <= 0.10 for e in errors)
    singles = [abs(x - m) / m <= 0.10 for v, m in zip(per_arch, meas) for x in v]
    rho = spearman(pred, meas) if len(archs) >= 2 else float("nan")
    summary = {"n": float(len(archs)), "within_10pct": within / len(archs), "spearman": rho,
               "mean_abs_error_pct": 100 * statistics.fmean(errors), "max_abs_error_pct": 100 * max(errors),
               "truth_repeats": float(repeats), "noise_cv_median_pct": statistics.median(cvs),
               "noise_cv_max_pct": max(cvs), "truth_within_10pct": sum(singles) / len(singles)}
    out(f"within ±10%: {within}/{len(archs)} ({100 * summary['within_10pct']:.0f}%)   Spearman ρ = {rho:.3f}   "
        f"mean |error| {summary['mean_abs_error_pct']:.1f}%   max |error| {summary['max_abs_error_pct']:.1f}%")
    out(f"noise floor: ground truth = median of {repeats} measurement(s) per architecture; their CV median "
        f"{summary['noise_cv_median_pct']:.1f}% (max {summary['noise_cv_max_pct']:.1f}%); a single measurement is "
        f"within ±10% of its own median {100 * summary['truth_within_10pct']:.0f}% of the time")
    if predictor.measured:
        out(f"({len(predictor.measured)} unit(s) were missing from the table and measured on the fly)")
    return summary


def latency_table_command(cfg: Config, *, out_path: str | None, table_path: str | None, validate_only: bool,
                          device: str | None, batch: int, input_size: int | None, threads: int | None,
                          warmup: int, repeats: int, rounds: int, n: int, calibrate_n: int, seed: int,
                          truth_repeats: int = 3, protocol: str = "interleaved", max_seconds: float = 2.0,
                          out: Out = print) -> int:
    """What ``nas latency-table`` does (see ``nas latency-table --help``)."""
    from evaluators.latency import check_latency_device
    from evaluators.latency_gate import MeasureGate
    from evaluators.latency_table import LatencyPredictor, LatencyTable

    lat = cfg.latency
    table = LatencyTable.load(table_path, where="--table") if validate_only else None
    dev = table.device if table is not None else (device or lat.device)
    check_latency_device(dev, field="--device" if table is None else "--table (its device)")
    gate = MeasureGate.for_device(dev, lat.lock_dir) if lat.isolate else None
    context = gate.measuring if gate is not None else contextlib.nullcontext
    problem = problem_of(cfg, input_size=input_size)
    space = SearchSpace(cfg.space, input_size=problem.input_size)
    if table is not None:
        LatencyPredictor(table).check_problem(in_chans=problem.in_chans, num_classes=problem.num_classes)
        archs = sample_archs(space, n, seed=seed)
        how = f"{table.protocol} protocol" + (f", reference {table.reference_ms:.4f} ms"
                                               if table.protocol == "interleaved" else "")
        out(f"validating {table_path} ({table.device}, batch {table.batch}, {len(table.entries)} units, "
            f"scale {table.scale:.4f}, overhead {table.overhead_ms:.4f} ms, {how}) on {len(archs)} random "
            f"architectures of {problem.in_chans}×{problem.input_size}×{problem.input_size} inputs (seed {seed})")
        validate(table, archs, repeats=truth_repeats, context=context, out=out)
        return 0
    how = "interleaved with the reference wrn-16-1 (ratio × its calibrated latency)" if protocol == "interleaved" \
        else f"warm-up {warmup}, median of {rounds} rounds × median of {repeats} repeats"
    out(f"latency table for {space.describe()} on {dev}, batch {batch}, {problem.in_chans}×{problem.input_size}²"
        f" inputs, {threads} thread(s), {how}"
        + ("; measurements gated (no gated training runs meanwhile)" if gate is not None else ""))
    references = None
    if protocol == "interleaved":
        from pathlib import Path

        from evaluators.latency_cache import LatencyCache
        from evaluators.latency_gate import user_lock_dir
        from evaluators.latency_protocol import ReferenceLatency
        from evaluators.latency_service import REFERENCE_FILE

        references = ReferenceLatency([LatencyCache(Path(lat.lock_dir or user_lock_dir()) / REFERENCE_FILE)])
    table = build_space_table(space, problem, device=dev, batch=batch, threads=threads, warmup=warmup,
                              repeats=repeats, rounds=rounds, protocol=protocol, references=references,
                              max_seconds=max_seconds, context=context, out=out)
    if calibrate_n:
        calibrate(table, sample_archs(space, calibrate_n, seed=seed + 1_000_003), repeats=truth_repeats,
                  context=context, out=out)
    path = table.save(out_path or "latency_table.yaml")
    out(f"wrote {len(table.entries)} entries → {path}")
    return 0
