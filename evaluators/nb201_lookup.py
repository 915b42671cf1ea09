"""``val_acc`` of a NAS-Bench-201 network looked up in the table instead of trained (:mod:`.nb201_table`).

An alternative evaluator of ``val_acc``: a search config picks it with ``metric_evaluators: {val_acc:
nb201_table}`` and then runs as usual (Ray Tune, Optuna, storage, export, report) with no training. The
architecture must be exactly the benchmark's network around one cell (the ``nb201-<ops>`` presets at 32×32,
CIFAR-10's 10 classes and 3 channels); anything else is an error naming what differs. ``val_acc`` is the chosen
accuracy column as a fraction (default ``baseline_accuracy``: 200 epochs of digital training, CIFAR-10 test
top-1). The table holds no training times: ``seconds_per_gmac`` (``evaluators: {nb201_table:
{seconds_per_gmac: S}}``) adds a simulated ``train_seconds`` = S × the network's GMACs (counted as the
complexity evaluator counts them, once per cell).
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from space import Arch, build_model
from space.blocks.nb201 import nb201_arch_str
from space.complexity import count_complexity
from space.presets import nb201
from train.config_base import ConfigModel

from .base import RunContext, register_evaluator
from .metrics import Metric
from .nb201_table import ACCURACIES, load_nb201_table

NUM_CLASSES, IN_CHANS, INPUT_SIZE = 10, 3, 32


class Nb201TableSettings(ConfigModel):
    """``evaluators: {nb201_table: {...}}``: which accuracy column, and an optional simulated training time."""

    column: Literal[ACCURACIES] = Field("baseline_accuracy", description="accuracy column of the table")
    seconds_per_gmac: float | None = Field(None, gt=0, description="simulated train_seconds per GMAC (None: none)")


def cell_ops(arch: Arch) -> tuple[str, ...]:
    """The cell of a NAS-Bench-201 network; ``ValueError`` naming the difference for any other architecture."""
    cells = [s for s in arch.stages if s.block == "nb201_cell"]
    if not cells:
        raise ValueError("nb201_table: the architecture has no nb201_cell stage; the table holds only "
                         "NAS-Bench-201 networks (the nb201-<ops> presets)")
    ops = tuple(dict(cells[0].block_args).get("ops", ()))
    try:
        expected = nb201(ops, input_size=INPUT_SIZE)
    except Exception as exc:
        raise ValueError(f"nb201_table: not a NAS-Bench-201 cell ({exc})") from None
    if arch != expected:
        raise ValueError(f"nb201_table: the architecture differs from NAS-Bench-201's network around "
                         f"{nb201_arch_str(ops)} (arch_id {arch.arch_id} vs {expected.arch_id}); the table "
                         f"holds only the benchmark's skeleton at {INPUT_SIZE}×{INPUT_SIZE}")
    return ops


class Nb201TableEvaluator:
    """Cheap evaluator: ``{"val_acc"}`` (and ``train_seconds`` when simulated) from the table, per cell."""

    name = "nb201_table"
    cheap = True

    def __init__(self, *, column: str = "baseline_accuracy", seconds_per_gmac: float | None = None) -> None:
        if column not in ACCURACIES:
            raise ValueError(f"nb201_table.column: must be one of {', '.join(ACCURACIES)}, got {column!r}")
        if seconds_per_gmac is not None and not seconds_per_gmac > 0:
            raise ValueError(f"nb201_table.seconds_per_gmac: must be > 0, got {seconds_per_gmac!r}")
        self.column, self.seconds_per_gmac = column, seconds_per_gmac
        self.table = load_nb201_table()
        self._macs: dict[tuple[str, ...], float] = {}

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (every cell was trained for the benchmark's 200 epochs)."""
        ops = cell_ops(arch)
        out = {"val_acc": getattr(self.table[ops], self.column) / 100.0}
        if self.seconds_per_gmac is not None:
            if ops not in self._macs:
                with torch.random.fork_rng(devices=[]):
                    model = build_model(arch, num_classes=NUM_CLASSES, in_chans=IN_CHANS)
                self._macs[ops] = float(count_complexity(model, input_size=INPUT_SIZE, in_chans=IN_CHANS)["macs"])
            out["train_seconds"] = self.seconds_per_gmac * self._macs[ops] / 1e9
        return out


def _for_run(ctx: RunContext) -> Nb201TableEvaluator:
    data = ctx.data
    if (data.num_classes, data.in_chans, data.input_size) != (NUM_CLASSES, IN_CHANS, INPUT_SIZE):
        raise ValueError(f"metric_evaluators.val_acc: nb201_table holds CIFAR-10 accuracies (10 classes, 3×32×32); "
                         f"data {data.name!r} has {data.num_classes} classes, {data.in_chans}×{data.input_size}²")
    return Nb201TableEvaluator(column=ctx.settings.column, seconds_per_gmac=ctx.settings.seconds_per_gmac)


register_evaluator("nb201_table", Nb201TableEvaluator, alternative=True, metrics=[
    Metric("val_acc", "max", label="validation accuracy")],
    build=_for_run, settings="nb201_table", settings_model=Nb201TableSettings,
    example=lambda: {"seconds_per_gmac": 1.0}, example_arch=lambda: nb201("conv3x3.skip.avg_pool.conv1x1.none.conv3x3"),
    doc="NAS-Bench-201 CIFAR-10 accuracy looked up per cell (Dong & Yang 2020; analog-nasbench's table)")
