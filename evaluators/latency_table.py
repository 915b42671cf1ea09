"""Per-unit latency lookup table and the sum-of-units latency predictor.

A network's latency is modelled as the sum of its parts' latencies, each measured once in isolation
on the target device: ProxylessNAS (Cai et al. 2019, §3.3, Eq. 5: E[LAT] = Σ_i E[LAT_i]) and FBNet
(Wu et al. 2019, §3.2, Eq. 4: LAT(a) = Σ_l LAT(b_l^(a))). Here a *unit* is what the builder
instantiates: the stem, each block of a stage (a whole stage for ``kind="stage"`` builders) and the
head (final norm → pool → [1×1 conv] → classifier). A unit's key is a canonical signature — kind,
block and its options, in→out channels, stride, input resolution, unit order, norm/act/attention
and their options — so equal units share one table entry and any difference gives another key.

The papers' pure sum ignores what the parts do not contain: Python dispatch of the enclosing
``nn.Sequential``s and ``NasNet.forward``, and cache contention between units (each unit is timed
with its own weights hot in cache). At batch 1 on a CPU that makes the sum underestimate, so the
prediction is ``scale · Σ units + overhead_ms``, with ``scale`` and ``overhead_ms >= 0`` fitted by a robust
line fit (Theil–Sen) on a few architectures measured end to end when the table is built (:func:`fit_overhead`;
``scale = 1, overhead = 0`` is the papers' estimator). Calibration architectures are drawn with
their own seed, never the validation ones.

**Protocol.** A table is built hundreds of measurements long, and on a shared machine the speed drifts between
the first unit and the last (and between building a table and validating it): with the ``plain`` protocol each
number is an absolute median of its own moment, so units measured at a busy moment are inflated against the rest.
With ``interleaved`` (the default of ``nas latency-table``) every unit, calibration network and validation network
is timed in alternating rounds with one fixed reference network — ``wrn-16-1`` at the table's ``input_size`` and
batch (:mod:`.latency_protocol`) — and stored as ``ratio × reference_ms``, where ``reference_ms`` is the
reference's latency calibrated once per machine and setting (the same stored number the measured ``latency``
evaluator's interleaved protocol scales by, so a predicted and a measured ``latency_ms`` share one scale). Drift
then moves both sides of every ratio alike and cancels.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import yaml

from space import Arch, Head, Stage, Stem, build_model, build_stage
from space.builder import stage_attention
from space.registry import BLOCKS
from train.checks import check_positive_int

from .base import register_evaluator
from .latency import LATENCY_MS, check_latency_device, measure_latency, timing_rounds
from .latency_protocol import REFERENCE, calibrate_rounds, check_protocol, interleave, reference_arch
from .latency_protocol import reference_key as protocol_reference_key
from .onnx_runtime import is_ort_device

FORMAT = "nas-latency-table/1"
UnitKind = Literal["stem", "block", "stage", "head"]
MeasureContext = Callable[[], ContextManager[Any]]
"""Zero-argument callable giving a context manager held around each measurement (e.g. a gate that
keeps other work off the device); ``contextlib.nullcontext`` when nothing needs excluding."""


# --------------------------------------------------------------------------- units and keys


@dataclass(frozen=True)
class Unit:
    """One separately timed part of a network (input resolution excluded: it is chained at lookup).

    ``stage`` is the stage the unit belongs to (``stem``: the first stage, whose norm/act the stem
    uses; ``head``: the last stage; ``block``: the stage with ``depth=1`` and this block's stride);
    ``in_chs`` the unit's input channels (``stem``: unused, the image channels come from the table).
    """

    kind: UnitKind
    stage: Stage
    in_chs: int
    stem: Stem | None = None
    head: Head | None = None


def _choice(name: str, args: tuple) -> str:
    return name + (json.dumps(dict(args), sort_keys=True, separators=(",", ":"), default=list) if args else "")


def _layers_desc(s: Stage) -> str:
    return f"order={s.order} norm={_choice(s.norm, s.norm_args)} act={s.act} attn={_choice(s.attention, s.attn_args)}"


def unit_key(unit: Unit, *, res: int, in_chans: int, num_classes: int) -> str:
    """Canonical signature of ``unit`` fed a ``res``×``res`` input: a stable, human-readable string.

    Only what changes the computed graph enters the key (a stem without norm/act does not name the
    stage's norm; dropout of the head, identity in eval mode, is left out).
    """
    s = unit.stage
    if unit.kind == "stem":
        st = unit.stem
        key = f"stem c={in_chans}>{st.width} k={st.kernel} s={st.stride} res={res}"
        if st.norm_act:
            key += f" norm={_choice(s.norm, s.norm_args)} act={s.act}"
        return key + (" pool" if st.pool else "")
    if unit.kind == "block":
        return f"block={_choice(s.block, s.block_args)} c={unit.in_chs}>{s.width} s={s.stride} res={res} " \
               f"{_layers_desc(s)}"
    if unit.kind == "stage":
        return f"stage={_choice(s.block, s.block_args)} depth={s.depth} c={unit.in_chs}>{s.width} s={s.stride} " \
               f"res={res} {_layers_desc(s)}"
    if unit.kind == "head":
        final = {"pre": f"{_choice(s.norm, s.norm_args)}+{s.act}", "white_conv": _choice(s.norm, s.norm_args)}
        hidden = f"{unit.head.hidden}+{s.act}" if unit.head.hidden else "0"
        return f"head c={unit.in_chs} res={res} final={final.get(s.order, 'none')} hidden={hidden} " \
               f"classes={num_classes}"
    raise ValueError(f"unit.kind: must be stem, block, stage or head, got {unit.kind!r}")


def stage_units(stage: Stage, in_chs: int) -> list[Unit]:
    """The units of one stage in forward order: each block (depth-1 repeats share a key) or the stage (a
    whole-stage builder, or a stage with one attention module on its stream)."""
    if BLOCKS.entry(stage.block).meta.get("kind") == "stage" or stage_attention(stage):
        return [Unit("stage", stage, in_chs)]
    first = Unit("block", replace(stage, depth=1), in_chs)
    rest = Unit("block", replace(stage, depth=1, stride=1), stage.width)
    return [first] + [rest] * (stage.depth - 1)


def arch_units(arch: Arch) -> list[Unit]:
    """Every unit of ``arch`` in forward order: stem, blocks (or stages), head."""
    units = [Unit("stem", arch.stages[0], arch.stem.width, stem=arch.stem)]
    chs = arch.stem.width
    for stage in arch.stages:
        units += stage_units(stage, chs)
        chs = stage.width
    return units + [Unit("head", arch.stages[-1], chs, head=arch.head)]


class _HeadUnit(nn.Module):
    """``NasNet.forward_head(final_norm(x))`` of a built model: exactly the network's head path."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        model.stem, model.stages = nn.Identity(), nn.Identity()  # keep only what the head runs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.final_norm(x))


def build_unit(unit: Unit, *, in_chans: int, num_classes: int) -> nn.Module:
    """The module ``build_model`` makes for ``unit`` (blocks through ``build_stage``; stem and head
    taken from a model built around the unit's stage, so they follow the builder exactly)."""
    with torch.random.fork_rng(devices=[]):
        if unit.kind == "block":
            return build_stage(unit.stage, unit.in_chs)[0]
        if unit.kind == "stage":
            return build_stage(unit.stage, unit.in_chs)
        stem = unit.stem if unit.kind == "stem" else Stem(width=unit.stage.width)
        arch = Arch(stem=stem, stages=(unit.stage,), head=unit.head or Head(), input_size=1 << 12)
        model = build_model(arch, num_classes=num_classes, in_chans=in_chans)
        return model.stem if unit.kind == "stem" else _HeadUnit(model)


# --------------------------------------------------------------------------- the table


@dataclass
class LatencyTable:
    """Per-unit latencies (ms) on one device at one batch size, plus the calibration terms.

    ``entries[key] = {"ms": float, "out": int}``: ``out`` is the unit's output resolution (0 for the
    head), which is the next unit's input resolution when a network is chained through the table.
    With ``protocol: plain`` each ``ms`` is the shared estimator (:func:`timed`): the median over ``rounds``
    rounds of the median of ``repeats`` timed passes (after ``warmup``) the OS did not preempt; on a shared machine
    a round that coincides with a burst of foreign work is outvoted by the others. With ``protocol: interleaved``
    it is ``ratio × reference_ms``: the ratio to the reference network (``wrn-16-1`` at ``input_size``) from
    alternating rounds until its 95% interval is within ``ci`` (or ``max_seconds``), the reference's latency
    calibrated once (module docstring).
    """

    device: str
    batch: int
    in_chans: int
    num_classes: int
    threads: int | None = 1
    warmup: int = 10
    repeats: int = 50
    rounds: int = 3
    entries: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: float = 1.0
    overhead_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    protocol: str = "plain"
    input_size: int | None = None
    reference_ms: float | None = None
    ci: float = 0.02
    max_seconds: float = 2.0

    def __post_init__(self) -> None:
        check_protocol(self.protocol, field="latency.table.protocol")
        if self.protocol == "interleaved" and (not isinstance(self.input_size, int) or self.input_size < 1):
            raise ValueError(f"latency.table.input_size: the interleaved protocol needs the reference's input size "
                             f"(an int >= 1), got {self.input_size!r}")

    def to_dict(self) -> dict[str, Any]:
        proto: dict[str, Any] = {"protocol": self.protocol}
        if self.protocol == "interleaved":
            proto.update(input_size=self.input_size, reference=REFERENCE, ci=float(self.ci),
                         max_seconds=float(self.max_seconds),
                         reference_ms=None if self.reference_ms is None else float(self.reference_ms))
        return {"format": FORMAT, "device": self.device, "batch": self.batch, "in_chans": self.in_chans,
                "num_classes": self.num_classes, "threads": self.threads, "warmup": self.warmup,
                "repeats": self.repeats, "rounds": self.rounds, **proto, "scale": float(self.scale),
                "overhead_ms": float(self.overhead_ms), "meta": dict(self.meta),
                "entries": {k: {"ms": round(float(v["ms"]), 6), "out": int(v["out"])}
                            for k, v in sorted(self.entries.items())}}

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, width=200))
        return p

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "latency.table") -> LatencyTable:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not a latency table (expected 'format: {FORMAT}', as written by "
                             f"`nas latency-table`)")
        try:
            entries = {str(k): {"ms": float(v["ms"]), "out": int(v["out"])} for k, v in (data["entries"] or {}).items()}
            table = cls(device=str(data["device"]), batch=int(data["batch"]), in_chans=int(data["in_chans"]),
                        num_classes=int(data["num_classes"]), threads=data.get("threads"),
                        warmup=int(data.get("warmup", 10)), repeats=int(data.get("repeats", 50)),
                        rounds=int(data.get("rounds", 1)), entries=entries, scale=float(data.get("scale", 1.0)),
                        overhead_ms=float(data.get("overhead_ms", 0.0)), meta=dict(data.get("meta") or {}),
                        protocol=data.get("protocol", "plain"), input_size=data.get("input_size"),
                        reference_ms=None if data.get("reference_ms") is None else float(data["reference_ms"]),
                        ci=float(data.get("ci", 0.02)), max_seconds=float(data.get("max_seconds", 2.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: malformed latency table ({type(exc).__name__}: {exc})") from None
        if table.protocol == "interleaved" and not (table.reference_ms and table.reference_ms > 0):
            raise ValueError(f"{where}: an interleaved table needs reference_ms > 0 (the reference's calibrated "
                             f"latency), got {table.reference_ms!r}")
        if any(not math.isfinite(v["ms"]) or v["ms"] < 0 for v in entries.values()):
            raise ValueError(f"{where}: every entry's ms must be a finite number >= 0")
        return table

    @classmethod
    def load(cls, path: str | Path, *, where: str = "latency.table") -> LatencyTable:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"{where}: file {str(p)!r} does not exist (build one with `nas latency-table`)")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(data, where=where)


def machine_info() -> dict[str, Any]:
    """Where a table was measured: host, CPU, core count, torch version and the time."""
    return {"host": platform.node(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": str(torch.__version__), "created": datetime.datetime.now().isoformat(timespec="seconds")}


def measure_unit(unit: Unit, *, res: int, table: LatencyTable,
                 context: MeasureContext = contextlib.nullcontext) -> dict[str, float]:
    """Time ``unit`` alone on the table's device/batch/threads; ``{"ms": median, "out": out_res}``. On an ONNX
    Runtime device the unit is exported alone; one that cannot be raises ``OnnxExportError`` naming its key."""
    module = build_unit(unit, in_chans=table.in_chans, num_classes=table.num_classes).eval()
    chans = table.in_chans if unit.kind == "stem" else unit.in_chs
    shape = (table.batch, chans, res, res)
    with torch.inference_mode():
        out = module(torch.zeros(shape))
    what = f"unit {unit_key(unit, res=res, in_chans=table.in_chans, num_classes=table.num_classes)!r}"
    return {"ms": timed(module, shape, table=table, context=context, what=what),
            "out": int(out.shape[-1]) if out.ndim == 4 else 0}


def timed(module: nn.Module, shape: tuple[int, ...], *, table: LatencyTable,
          context: MeasureContext = contextlib.nullcontext, what: str = "model") -> float:
    """The table's number (ms): :func:`~evaluators.latency.measure_latency`'s estimator over ``rounds`` rounds of
    ``repeats`` kept passes (median over rounds of the median of passes the OS did not preempt) — the measured
    evaluator's estimator, so a table entry and a measured ``latency_ms`` mean the same thing. On an ONNX Runtime
    device ``module`` is exported (outside ``context``; an export failure names ``what``). ``context`` is held
    once around all rounds: taking a gate costs a wait for every gated trainer's batch boundary.
    """
    check_latency_device(table.device, field="latency.table.device")
    model: nn.Module | bytes = module
    if is_ort_device(table.device):
        from space.onnx_export import export_model

        model = export_model(module, input_shape=shape, what=what)
    if table.protocol == "interleaved":
        return interleaved_ms(model, shape, table=table, context=context)
    with context():
        return measure_latency(model, input_shape=shape, device=table.device, warmup=table.warmup,
                               repeats=table.repeats, threads=table.threads, rounds=table.rounds)["median_ms"]


_REFERENCES: dict[tuple, nn.Module | bytes] = {}


def reference_model(table: LatencyTable) -> nn.Module | bytes:
    """The interleaved protocol's reference network for ``table`` (built once per setting; for an ONNX Runtime
    device its export)."""
    ort = is_ort_device(table.device)
    key = (table.input_size, table.in_chans, table.num_classes, table.batch if ort else 0, ort)
    if key not in _REFERENCES:
        with torch.random.fork_rng(devices=[]):
            model: nn.Module | bytes = build_model(reference_arch(table.input_size), num_classes=table.num_classes,
                                                   in_chans=table.in_chans).eval()
        if ort:
            from space.onnx_export import export_model

            model = export_model(model, input_shape=reference_shape(table), what=f"reference {REFERENCE}")
        _REFERENCES[key] = model
    return _REFERENCES[key]


def reference_shape(table: LatencyTable) -> tuple[int, int, int, int]:
    return (table.batch, table.in_chans, table.input_size, table.input_size)


def interleaved_ms(model: nn.Module | bytes, shape: tuple[int, ...], *, table: LatencyTable,
                   context: MeasureContext = contextlib.nullcontext) -> float:
    """``ratio × table.reference_ms``: ``model`` on ``shape`` in alternating rounds with the reference
    (:func:`~evaluators.latency_protocol.interleave`, the table's ``ci`` and ``max_seconds``), inside ``context``."""
    if not table.reference_ms:
        raise ValueError("latency.table.reference_ms: not calibrated (set it with calibrate_reference first)")
    with context(), \
            timing_rounds(model, input_shape=shape, device=table.device, threads=table.threads) as cand, \
            timing_rounds(reference_model(table), input_shape=reference_shape(table), device=table.device,
                          threads=table.threads) as ref:
        res = interleave(cand, ref, ci=table.ci, max_seconds=table.max_seconds)
    return float(res["ratio"] * table.reference_ms)


def reference_key(table: LatencyTable) -> str:
    """What the reference's calibrated latency is stored under: the measured ``latency`` evaluator's key for the
    same setting (:func:`~evaluators.latency_protocol.reference_key`), so both scale by one number."""
    return protocol_reference_key(device=table.device, batch=table.batch, input_size=table.input_size,
                                  in_chans=table.in_chans, num_classes=table.num_classes, threads=table.threads)


def calibrate_reference(table: LatencyTable, references: Any = None,
                        context: MeasureContext = contextlib.nullcontext) -> float:
    """Set ``table.reference_ms``: looked up in ``references`` (a
    :class:`~evaluators.latency_protocol.ReferenceLatency`, e.g. the machine's store) or calibrated once inside
    ``context`` (:func:`~evaluators.latency_protocol.calibrate_rounds` with the table's ``warmup`` and ``repeats``)
    and stored there."""
    from .latency_protocol import ReferenceLatency

    references = references if references is not None else ReferenceLatency()

    def measure() -> float:
        with context(), timing_rounds(reference_model(table), input_shape=reference_shape(table),
                                      device=table.device, threads=table.threads) as ref:
            return calibrate_rounds(ref, warmup=table.warmup, repeats=table.repeats)

    table.reference_ms = float(references.get(reference_key(table), measure))
    return table.reference_ms


# --------------------------------------------------------------------------- prediction


class LatencyPredictor:
    """``predict(arch) -> ms``: ``scale · Σ table[unit key] + overhead_ms`` over the arch's units.

    A key missing from the table is measured on the fly (and added to the in-memory table) when
    ``measure_missing`` and the table's device exists here; otherwise a ``KeyError`` names the key.
    ``context`` is held around each such measurement. ``measured`` lists the keys measured so.
    """

    def __init__(self, table: LatencyTable, *, measure_missing: bool = True,
                 context: MeasureContext = contextlib.nullcontext) -> None:
        self.table = table
        self.context = context
        self.measured: list[str] = []
        self.measure_missing = measure_missing
        if measure_missing:
            try:
                check_latency_device(table.device, field="latency.table.device")
            except ValueError:
                self.measure_missing = False

    def check_problem(self, *, in_chans: int, num_classes: int) -> None:
        """``ValueError`` unless the table was built for images of ``in_chans`` channels and ``num_classes``."""
        t = self.table
        if (t.in_chans, t.num_classes) != (in_chans, num_classes):
            raise ValueError(f"latency.table: built for {t.in_chans}-channel images and {t.num_classes} classes, "
                             f"but the data set has {in_chans} channels and {num_classes} classes; rebuild it with "
                             f"`nas latency-table` for this config")

    def breakdown(self, arch: Arch) -> list[tuple[str, float]]:
        """``(key, ms)`` per unit in forward order (repeated blocks appear once per repeat)."""
        rows, res = [], arch.input_size
        for unit in arch_units(arch):
            key = unit_key(unit, res=res, in_chans=self.table.in_chans, num_classes=self.table.num_classes)
            entry = self.table.entries.get(key)
            if entry is None:
                entry = self._missing(key, unit, res)
            rows.append((key, entry["ms"]))
            res = entry["out"]
        return rows

    def _missing(self, key: str, unit: Unit, res: int) -> dict[str, float]:
        if not self.measure_missing:
            raise KeyError(f"latency.table: no entry for {key!r} and the table's device "
                           f"{self.table.device!r} is not available here to measure it; rebuild the table "
                           f"with `nas latency-table` for this search space")
        entry = measure_unit(unit, res=res, table=self.table, context=self.context)
        self.table.entries[key] = entry
        self.measured.append(key)
        return entry

    def units_ms(self, arch: Arch) -> float:
        """Σ of the arch's unit latencies (ms), without the calibration terms."""
        return float(sum(ms for _, ms in self.breakdown(arch)))

    def predict(self, arch: Arch) -> float:
        """Predicted end-to-end latency (ms) of ``arch`` at the table's batch size."""
        return self.table.scale * self.units_ms(arch) + self.table.overhead_ms


def fit_overhead(units_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    """``(scale, overhead_ms)`` of the line ``measured ≈ scale · Σunits + overhead`` over calibration archs, with
    ``overhead_ms >= 0``.

    Theil–Sen estimator (Sen 1968): the slope is the median of the pairwise slopes and the intercept
    the median of ``measured − slope · Σunits`` — robust to the odd measurement a busy machine spoils,
    where least squares is not. The overhead is a fixed per-call cost (dispatch of the enclosing modules), so it
    cannot be negative; a negative intercept comes from noise or a slope extrapolated far beyond the calibration
    sums, and then the constrained fit's optimum lies on ``overhead = 0``: the robust slope through the origin,
    the median of ``measured / Σunits``. With fewer than 3 points, equal sums or a non-positive slope it falls
    back to ``scale = 1`` and the median residual (a pure per-call overhead; the origin line again if that is
    negative), which needs one point.
    """
    u, m = np.asarray(units_ms, dtype=float), np.asarray(measured_ms, dtype=float)
    if u.shape != m.shape or u.ndim != 1 or u.size == 0:
        raise ValueError(f"fit_overhead: need equally many (>= 1) sums and measurements, got {u.size} and {m.size}")
    if not (u > 0).all():
        raise ValueError("fit_overhead: every sum of units must be > 0")
    i, j = np.triu_indices(u.size, k=1)
    keep = u[j] != u[i]
    scale, overhead = 1.0, float(np.median(m - u))
    if u.size >= 3 and keep.any():
        slope = float(np.median((m[j] - m[i])[keep] / (u[j] - u[i])[keep]))
        if slope > 0:
            scale, overhead = slope, float(np.median(m - slope * u))
    if overhead < 0:
        return float(np.median(m / u)), 0.0
    return scale, overhead


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the (tie-averaged) ranks; NaN for constant input."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError(f"spearman: need two equally long sequences of >= 2 values, got {a.size} and {b.size}")
    ra, rb = _ranks(a), _ranks(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(v.size, dtype=float)
    ranks[order] = np.arange(1, v.size + 1)
    for value in np.unique(v):  # ties share their mean rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def add_unit(table: LatencyTable, unit: Unit, *, res: int,
             context: MeasureContext = contextlib.nullcontext) -> tuple[str, dict[str, float], bool]:
    """Measure ``unit`` at ``res`` into ``table`` unless its key is there; ``(key, entry, measured_now)``."""
    key = unit_key(unit, res=res, in_chans=table.in_chans, num_classes=table.num_classes)
    if key in table.entries:
        return key, table.entries[key], False
    table.entries[key] = measure_unit(unit, res=res, table=table, context=context)
    return key, table.entries[key], True


def build_table(units: Iterable[tuple[Unit, int]], *, device: str, batch: int, in_chans: int, num_classes: int,
                threads: int | None = 1, warmup: int = 10, repeats: int = 50, rounds: int = 3,
                protocol: str = "plain", input_size: int | None = None, references: Any = None,
                context: MeasureContext = contextlib.nullcontext,
                progress: Callable[[int, str, float], None] | None = None) -> LatencyTable:
    """Measure each distinct ``(unit, input resolution)`` once into a new :class:`LatencyTable`; ``interleaved``
    calibrates (or looks up in ``references``) the reference at ``input_size`` first."""
    check_latency_device(device)
    table = LatencyTable(device=device, batch=check_positive_int(batch, "batch"),
                         in_chans=check_positive_int(in_chans, "in_chans"),
                         num_classes=check_positive_int(num_classes, "num_classes"), threads=threads,
                         warmup=check_positive_int(warmup, "warmup", minimum=0),
                         repeats=check_positive_int(repeats, "repeats"), rounds=check_positive_int(rounds, "rounds"),
                         meta=machine_info(), protocol=protocol, input_size=input_size)
    if protocol == "interleaved":
        calibrate_reference(table, references, context)
    for unit, res in units:
        key, entry, new = add_unit(table, unit, res=res, context=context)
        if new and progress is not None:
            progress(len(table.entries), key, entry["ms"])
    return table


# --------------------------------------------------------------------------- the cheap evaluator


class PredictedLatencyEvaluator:
    """Cheap evaluator: latency predicted from a per-unit table (no model is run when keys are known).

    ``evaluate`` returns ``latency_ms`` and ``latency_ms_b{B}`` (B = the table's batch), like the
    measured :class:`~evaluators.latency.LatencyEvaluator`, so either can feed the same objective.
    """

    name = "latency_predicted"
    cheap = True

    def __init__(self, *, table: LatencyTable | str | Path, num_classes: int, in_chans: int,
                 measure_missing: bool = True, context: MeasureContext = contextlib.nullcontext) -> None:
        table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        self.predictor = LatencyPredictor(table, measure_missing=measure_missing, context=context)
        self.predictor.check_problem(in_chans=check_positive_int(in_chans, "in_chans"),
                                     num_classes=check_positive_int(num_classes, "num_classes"))

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (a lookup has no fidelity)."""
        ms = self.predictor.predict(arch)
        return {"latency_ms": ms, f"latency_ms_b{self.predictor.table.batch}": ms}


register_evaluator("latency_predicted", PredictedLatencyEvaluator, metrics=[replace(LATENCY_MS, cheap=True)],
                   example=lambda: {"num_classes": 10, "in_chans": 1, "table": LatencyTable(
                       device="cpu", batch=1, in_chans=1, num_classes=10, warmup=1, repeats=3, rounds=1)})
