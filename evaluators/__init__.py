"""How much an architecture costs and how good it is, as metrics: complexity, latency, proxy accuracy.

Every evaluator follows one contract (:class:`Evaluator`: ``name``, ``cheap``,
``evaluate(arch, budget=None, *, report=None) -> dict[str, float]``) and is registered in
:data:`EVALUATORS` with the metrics it returns (``create_evaluator("latency", num_classes=10, in_chans=3)``).
The metrics form one table (:data:`METRICS`, :mod:`.metrics`) from which the search derives its objectives,
limits, columns and plots. Every module of this package is imported with it, so a new evaluator is one file
ending in its ``register_evaluator`` line. Imports :mod:`space` and :mod:`train` (proxy accuracy is a short
run of its engine); never Optuna or Ray.
"""
from space._autoload import import_submodules

from .accuracy import AccuracyEvaluator
from .base import (
                   EVALUATORS,
                   Evaluator,
                   Report,
                   RunContext,
                   build_evaluator,
                   cheap_hint,
                   cheap_under,
                   create_evaluator,
                   list_evaluators,
                   may_be_cheap,
                   register_evaluator,
                   settings_key,
                   settings_model,
                   settings_models,
)
from .complexity import ComplexityEvaluator
from .latency import LatencyEvaluator, measure_latency
from .latency_service import LatencyService, RunLatency
from .latency_table import LatencyPredictor, LatencyTable, PredictedLatencyEvaluator
from .metrics import (
                      METRICS,
                      Metric,
                      get_metric,
                      list_metrics,
                      metric_alternatives,
                      metric_evaluator,
                      objective_names,
)

import_submodules(__name__, __path__)

__all__ = [
    "AccuracyEvaluator", "ComplexityEvaluator", "EVALUATORS", "Evaluator", "LatencyEvaluator", "LatencyPredictor",
    "LatencyService", "LatencyTable", "METRICS", "Metric", "PredictedLatencyEvaluator", "Report", "RunContext",
    "RunLatency", "build_evaluator", "cheap_hint", "cheap_under", "create_evaluator", "get_metric",
    "list_evaluators", "list_metrics", "may_be_cheap", "measure_latency", "metric_alternatives", "metric_evaluator",
    "objective_names", "register_evaluator", "settings_key", "settings_model", "settings_models",
]
