"""The cheap complexity evaluator: params, fvcore FLOPs and conv+linear MACs (counted by :mod:`space.complexity`).

Counting traces the built network (~0.25 s for a NAS-Bench-201 network on one core): with table look-ups for
accuracy it is most of a trial's work. Counts are kept per process by ``arch_id``, and with
``evaluators: {complexity: {cache_file: PATH}}`` also in a SQLite file that any number of runs and trial processes
share (repeated benchmark searches over the same space count each architecture once). A cached count is keyed by
the architecture, the input (size, channels, classes) and a hash of the ``space`` package's source, so a count
made before a block's code changed is never reused.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, field_validator

from space import Arch, build_model
from space.complexity import count_complexity
from train.checks import check_positive_int
from train.config_base import ConfigModel

from .base import RunContext, register_evaluator
from .metrics import Metric


class ComplexitySettings(ConfigModel):
    """``evaluators: {complexity: {...}}``."""

    cache_file: str | None = Field(None, description="SQLite file of counts shared by runs (None: per process)")

    @field_validator("cache_file")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        """Resolved where the config is read: trial processes run in other working folders."""
        if v is None:
            return None
        path = Path(v).expanduser().resolve()
        if path.is_dir():
            raise ValueError(f"{v!r} is a folder; give a file path, e.g. {str(Path(v) / 'complexity.sqlite')!r}")
        return str(path)


@lru_cache(maxsize=1)
def space_code_hash() -> str:
    """SHA-256 (first 16 hex digits) of every source and preset file of the ``space`` package, in path order."""
    import space

    root = Path(space.__file__).parent
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


class CountCache:
    """``key -> counts`` in a SQLite file (write-ahead log: concurrent trial processes read while one writes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS counts (key TEXT PRIMARY KEY, counts TEXT NOT NULL)")
        return con

    def get(self, key: str) -> dict[str, float] | None:
        with contextlib.closing(self._connect()) as con:
            row = con.execute("SELECT counts FROM counts WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, counts: dict[str, float]) -> None:
        with contextlib.closing(self._connect()) as con, con:
            con.execute("INSERT OR REPLACE INTO counts VALUES (?, ?)", (key, json.dumps(counts)))


class ComplexityEvaluator:
    """Cheap evaluator: ``{"params", "flops", "macs"}`` of the built model at ``arch.input_size``, counted once per
    architecture (by ``arch_id``) per evaluator, and once per ``cache_file`` when one is given (module doc)."""

    name = "complexity"
    cheap = True

    def __init__(self, *, num_classes: int, in_chans: int, cache_file: str | Path | None = None) -> None:
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self.cache = CountCache(cache_file) if cache_file is not None else None
        self._counts: dict[str, dict[str, float]] = {}

    def _key(self, arch: Arch) -> str:
        return f"{arch.arch_id}|{arch.input_size}|{self.in_chans}|{self.num_classes}|{space_code_hash()}"

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (complexity has no fidelity)."""
        if arch.arch_id not in self._counts:
            stored = self.cache.get(self._key(arch)) if self.cache is not None else None
            if stored is None:
                with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG alone
                    model = build_model(arch, num_classes=self.num_classes, in_chans=self.in_chans)
                stored = {k: float(v) for k, v in
                          count_complexity(model, input_size=arch.input_size, in_chans=self.in_chans).items()}
                if self.cache is not None:
                    self.cache.put(self._key(arch), stored)
            self._counts[arch.arch_id] = stored
        return dict(self._counts[arch.arch_id])


def _build(ctx: RunContext) -> ComplexityEvaluator:
    cache = ctx.settings.cache_file if ctx.settings is not None else None
    return ComplexityEvaluator(num_classes=ctx.num_classes, in_chans=ctx.in_chans, cache_file=cache)


COUNTS = dict(limit=True, cheap=True, scale=1e6, fmt="{:.2f}M", log=True)
register_evaluator("complexity", ComplexityEvaluator, metrics=[
    Metric("params", "min", label="params (M)", **COUNTS),
    Metric("flops", "min", label="FLOPs (M, fvcore total)", **COUNTS),
    Metric("macs", "min", label="MACs (M, conv+linear)", **COUNTS),
], build=_build, settings="complexity", settings_model=ComplexitySettings,
    example=lambda: {"num_classes": 10, "in_chans": 1})
