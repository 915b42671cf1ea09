"""A throw-away metric for tests/search/test_metric_table.py, defined outside ``evaluators/`` as a user's
would be: ``depth``, the number of blocks of an architecture (cheap, minimised). A search reaches it
through its config's ``plugins: [tests.search.depth_metric]``."""
from __future__ import annotations

from typing import Any

from evaluators import Metric, register_evaluator
from space import Arch


class DepthEvaluator:
    """``{"depth": Σ stage depths}``: read from the spec, nothing is built."""

    name = "depth"
    cheap = True

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        return {"depth": float(sum(stage.depth for stage in arch.stages))}


register_evaluator("depth", DepthEvaluator, metrics=[Metric("depth", "min", label="blocks", cheap=True, fmt="{:g}")],
                   build=lambda ctx: DepthEvaluator(), example=lambda: {})
