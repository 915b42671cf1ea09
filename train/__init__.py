"""Training a given network: data sets and loaders, the training engine, the training-side methods,
full-scale retraining and compression.

Imports :mod:`space` only (never Optuna or Ray). One engine (:class:`Engine`, :mod:`train.engine`)
runs every training loop: proxy training, retraining and compression fine-tuning. Subpackages:
:mod:`train.methods` (GradInit, batch-size LR rule, effective LR), :mod:`train.retrain` (``nas
retrain``: timm's parts, AMP, EMA, DDP, exact resume) and :mod:`train.compress` (``nas prune``:
Taylor pruning, gradient redundancy, LRPET).
"""
from .checks import check_positive_int, resolve_device
from .data import (
                   DATASETS,
                   DataBundle,
                   DataSetName,
                   TensorLoader,
                   TensorSplit,
                   load_dataset,
                   make_loaders,
                   make_test_loader,
                   random_crop_flip,
                   stratified_split,
)
from .engine import (
                   Engine,
                   NonFiniteLossError,
                   Precision,
                   cosine_factor,
                   create_precision,
                   evaluate_accuracy,
                   failed_at_run_time,
                   make_cosine_scheduler,
                   make_sgd,
                   nas_param_groups,
)

__all__ = [
    "DATASETS", "DataBundle", "DataSetName", "Engine", "NonFiniteLossError", "Precision", "TensorLoader",
    "TensorSplit", "check_positive_int", "cosine_factor", "create_precision", "evaluate_accuracy", "failed_at_run_time",
    "load_dataset",
    "make_cosine_scheduler", "make_loaders", "make_sgd", "make_test_loader", "nas_param_groups", "random_crop_flip",
    "resolve_device", "stratified_split",
]
