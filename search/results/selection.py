"""What the exported files and the re-measure session agree on: one trial per architecture, the ``select`` rule's
best, and the presets ``nas compare`` recorded (a module of its own, so export, compare and the re-measure session
share them without importing each other)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from ..config import Config
from ..limits import TIE_BREAK, given_limits


def unique_archs(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` with each ``arch_id`` once: the earliest (lowest number) of each; trials without one kept.

    A trial answered from the result cache is a COMPLETE trial with its source's values, so without this the
    front (and the select rule's ties) would list one architecture twice."""
    seen: set[str] = set()
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        arch_id = t.user_attrs.get("arch_id")
        if arch_id is None or arch_id not in seen:
            out.append(t)
            if arch_id is not None:
                seen.add(arch_id)
    return out


def select_best(trials: list[FrozenTrial], cfg: Config) -> FrozenTrial | None:
    """Highest val_acc among COMPLETE trials within every ``select`` budget; ties → fewer of ``TIE_BREAK``."""
    objectives = cfg.objectives

    def value(t: FrozenTrial, key: str) -> float | None:
        if key in objectives:
            return t.values[objectives.index(key)]
        v = t.user_attrs.get(key)
        return float(v) if v is not None else None

    limits = given_limits(cfg.select)
    complete = unique_archs([t for t in trials if t.state == TrialState.COMPLETE])
    ok = [t for t in complete if all(metric.within(value(t, metric.name), bound) for _, metric, bound in limits)]
    if not ok:
        return None
    return max(ok, key=lambda t: (value(t, "val_acc"), -(value(t, TIE_BREAK) or 0.0)))


def load_compare(run_dir: Path) -> dict[str, Any] | None:
    """``RUN_DIR/compare.json`` if ``nas compare`` has written it, else None."""
    path = Path(run_dir) / "compare.json"
    return json.loads(path.read_text()) if path.is_file() else None
