"""The two baselines every zero-cost comparison reports (Abdelfattah et al. 2021, Table 1): params and MACs."""
from __future__ import annotations

import torch.nn as nn

from space.complexity import count_complexity, count_params

from .common import Batch, check_batch


def params(model: nn.Module) -> float:
    """Number of parameters (:func:`space.complexity.count_params`, shared tensors once)."""
    return float(count_params(model))


def macs(model: nn.Module, batch: Batch) -> float:
    """Conv + linear multiply-adds of one sample shaped like ``batch``'s (:func:`space.complexity.count_complexity`;
    square images only, as it counts)."""
    x, _ = check_batch(batch)
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"batch: macs needs square images (N, C, S, S), got x of shape {tuple(x.shape)}")
    return float(count_complexity(model, input_size=int(x.shape[-1]), in_chans=int(x.shape[1]))["macs"])
