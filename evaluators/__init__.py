"""How much an architecture costs and how good it is, as metrics: complexity, latency, proxy accuracy.

Every evaluator follows one contract (:class:`Evaluator`: ``name``, ``cheap``,
``evaluate(arch, budget=None, *, report=None) -> dict[str, float]``) and is registered in
:data:`EVALUATORS` (``create_evaluator("latency", num_classes=10, in_chans=3)``). Imports
:mod:`space` and :mod:`train` (proxy accuracy is a short run of its engine); never Optuna or Ray.
"""
from .accuracy import AccuracyEvaluator
from .base import EVALUATORS, Evaluator, Report, create_evaluator, list_evaluators, register_evaluator
from .complexity import ComplexityEvaluator
from .latency import LatencyEvaluator, measure_latency
from .latency_service import LatencyService
from .latency_table import LatencyPredictor, LatencyTable, PredictedLatencyEvaluator

__all__ = [
    "AccuracyEvaluator", "ComplexityEvaluator", "EVALUATORS", "Evaluator", "LatencyEvaluator", "LatencyPredictor",
    "LatencyService", "LatencyTable", "PredictedLatencyEvaluator", "Report", "create_evaluator", "list_evaluators",
    "measure_latency", "register_evaluator",
]
