"""How much an architecture costs and how good it is: complexity, latency, proxy accuracy, data.

Every evaluator follows one contract (:class:`Evaluator`: ``name``, ``cheap``,
``evaluate(arch, budget=None, *, report=None) -> dict[str, float]``) and is registered in
:data:`EVALUATORS` (``create_evaluator("latency", num_classes=10, in_chans=3)``).
"""
from .accuracy import AccuracyEvaluator
from .base import EVALUATORS, Evaluator, Report, create_evaluator, list_evaluators, register_evaluator, resolve_device
from .complexity import MAC_OPERATORS, ComplexityEvaluator, count_complexity, count_params, layer_table
from .data import (DATASETS, DataBundle, TensorLoader, TensorSplit, load_dataset, make_loaders, make_test_loader,
                   random_crop_flip, stratified_split)
from .latency import LatencyEvaluator, measure_latency
from .latency_table import LatencyPredictor, LatencyTable, PredictedLatencyEvaluator
from .train import (NonFiniteLossError, cosine_factor, evaluate_accuracy, make_cosine_scheduler, make_sgd,
                    nas_param_groups, train_one_epoch)

__all__ = [
    "AccuracyEvaluator", "ComplexityEvaluator", "DATASETS", "DataBundle", "EVALUATORS", "Evaluator",
    "LatencyEvaluator", "LatencyPredictor", "LatencyTable", "PredictedLatencyEvaluator", "MAC_OPERATORS", "NonFiniteLossError", "Report", "TensorLoader", "TensorSplit",
    "cosine_factor", "count_complexity", "count_params", "create_evaluator", "evaluate_accuracy", "layer_table",
    "list_evaluators", "load_dataset", "make_cosine_scheduler", "make_loaders", "make_sgd", "make_test_loader",
    "measure_latency", "nas_param_groups", "random_crop_flip", "register_evaluator", "resolve_device",
    "stratified_split", "train_one_epoch",
]
