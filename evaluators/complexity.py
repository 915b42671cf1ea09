"""The cheap complexity evaluator: params, fvcore FLOPs and conv+linear MACs (counted by :mod:`space.complexity`)."""
from __future__ import annotations

from typing import Any

import torch

from space import Arch, build_model
from space.complexity import count_complexity
from train.checks import check_positive_int

from .base import register_evaluator
from .metrics import Metric


class ComplexityEvaluator:
    """Cheap evaluator: ``{"params", "flops", "macs"}`` of the built model at ``arch.input_size``, counted once per
    architecture (by ``arch_id``) per evaluator."""

    name = "complexity"
    cheap = True

    def __init__(self, *, num_classes: int, in_chans: int) -> None:
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_chans = check_positive_int(in_chans, "in_chans")
        self._counts: dict[str, dict[str, float]] = {}

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (complexity has no fidelity)."""
        if arch.arch_id not in self._counts:
            with torch.random.fork_rng(devices=[]):  # building draws weights: leave the caller's RNG alone
                model = build_model(arch, num_classes=self.num_classes, in_chans=self.in_chans)
            out = count_complexity(model, input_size=arch.input_size, in_chans=self.in_chans)
            self._counts[arch.arch_id] = {k: float(v) for k, v in out.items()}
        return dict(self._counts[arch.arch_id])


COUNTS = dict(limit=True, cheap=True, scale=1e6, fmt="{:.2f}M", log=True)
register_evaluator("complexity", ComplexityEvaluator, metrics=[
    Metric("params", "min", label="params (M)", **COUNTS),
    Metric("flops", "min", label="FLOPs (M, fvcore total)", **COUNTS),
    Metric("macs", "min", label="MACs (M, conv+linear)", **COUNTS),
], build=lambda ctx: ComplexityEvaluator(num_classes=ctx.num_classes, in_chans=ctx.in_chans),
    example=lambda: {"num_classes": 10, "in_chans": 1})
