"""Invariance feature transform, "ift" (Ye, Zhou, McKinney, Liu, Zhou & Zhdanov, "Exploiting
Invariance in Training Deep Neural Networks", arXiv 2103.16634, 2021) — a documented reading.

The paper builds two invariances into the input of each conv: scale invariance "with local
statistics in the data", and GL(n) invariance "with global statistics extracted from a batch"
(a decorrelation, as in the same first author's network deconvolution, ICLR 2020). Only the
abstract and the network-deconvolution code could be read here, so the normaliser implements:

1. local standardisation — per sample n and position p, over the k×k neighbourhood (option
   ``window``, k=3: the patch the following 3×3 conv reads) and all channels:
       μ_n(p) = mean_{c, q∈N(p)} x_{n,c,q},  σ²_n(p) = mean_{c, q∈N(p)} x²_{n,c,q} − μ_n(p)²,
       x̃ = (x − μ_n(p)) / √(σ²_n(p) + ε_local)
   (border windows average only the pixels inside). x̃ is unchanged by x ↦ a·x + b with a > 0
   constant over each neighbourhood (up to ε_local), i.e. it is locally invariant to intensity
   scale and offset;
2. batch decorrelation — consecutive groups of ``group_size`` channels are whitened with the batch
   covariance: X̂ = Σ^(−1/2)(X̃ − μ), Σ = (1/M) X̃_c X̃_cᵀ + εI, Σ^(−1/2) by network deconvolution's
   coupled Newton–Schulz iteration (``iterations``, 5; ε = 1e-2 as that code); a width that the group
   size does not divide gets one smaller last group. Eval uses running mean and running whitening
   matrix (the first batch initialises them, then exponential averages with ``momentum``);
3. a per-channel affine γ, β (network deconvolution has none because its conv follows directly;
   as a normaliser choice this one keeps BN's affine so that it can replace BN anywhere).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import OptionSpec, register_norm
from ._whiten import GroupWhitening, newton_schulz_isqrt


def local_standardize(x: torch.Tensor, window: int, eps: float) -> torch.Tensor:
    """(x − μ)/√(σ² + ε) with μ, σ² over all channels and the ``window``×``window`` neighbourhood of each pixel."""
    pad = window // 2
    mean = F.avg_pool2d(x.mean(1, keepdim=True), window, 1, pad, count_include_pad=False)
    sq = F.avg_pool2d(x.square().mean(1, keepdim=True), window, 1, pad, count_include_pad=False)
    var = (sq - mean.square()).clamp_min(0.0)
    return (x - mean) * torch.rsqrt(var + eps)


class InvarianceFeatureTransform(nn.Module):
    """Local standardisation (scale invariance) → grouped batch decorrelation (GL(n)) → per-channel affine."""

    def __init__(self, num_features: int, *, window: int = 3, group_size: int = 16, iterations: int = 5,
                 eps: float = 1e-2, local_eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.window, self.local_eps = window, local_eps
        self.decorrelate = GroupWhitening(num_features, group_size=group_size, iterations=iterations, eps=eps,
                                          momentum=momentum, isqrt=newton_schulz_isqrt, warm_start=True)
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def reset_nas_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        return f"window={self.window}, local_eps={self.local_eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.decorrelate(local_standardize(x, self.window, self.local_eps))
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _ift(num_features: int, *, window: int = 3, group_size: int = 16, iterations: int = 5, eps: float = 1e-2,
         momentum: float = 0.1) -> nn.Module:
    """Invariance feature transform (Ye et al. 2021): local standardisation + batch decorrelation + affine."""
    return InvarianceFeatureTransform(num_features, window=window, group_size=group_size, iterations=iterations,
                                      eps=eps, momentum=momentum)


register_norm("ift", _ift, options={
    "window": OptionSpec(int, 3, "neighbourhood k of the local statistics", lambda v: v >= 1 and v % 2 == 1,
                         "odd, >= 1"),
    "group_size": OptionSpec(int, 16, "channels per decorrelation group", lambda v: v >= 1, ">= 1"),
    "iterations": OptionSpec(int, 5, "Newton–Schulz iterations", lambda v: 1 <= v <= 20, "in [1, 20]"),
    "eps": OptionSpec(float, 1e-2, "ε added to the covariance diagonal", lambda v: v > 0, "> 0"),
    "momentum": OptionSpec(float, 0.1, "running-stat momentum", lambda v: 0 < v <= 1, "in (0, 1]")},
    doc="Invariance feature transform (Ye et al. 2021): local-statistics standardisation, then grouped "
        "batch decorrelation (Newton–Schulz), then affine")
