"""Batch Group Normalization ("bgn"; Zhou, Sun, Ye, Lan, Luo, Lai, Esperança, Yang & Li, "Batch Group
Normalization", arXiv 2012.02782, 2020): BN's statistics taken over groups of channels as well as the batch.

    training:  μ_g, σ²_g over (N, C/G, H, W) — the group's channels pooled over the whole batch,
               x̂ = (x − μ_g)/√(σ²_g + ε),  y = γ ⊙ x̂ + β (per channel);
    eval:      running μ_g, σ²_g (exponential averages, ``momentum``; unbiased variance as BN).

With batch size 1 the training-mode output equals GN's; with G = C it is BN. Groups follow GN's
rule G = min(``groups``, C) (see :mod:`space.norms.gn`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import register_norm
from .gn import effective_groups, group_check, group_options


class BatchGroupNorm2d(nn.Module):
    """Group-wise normalisation with statistics over (N, C/G, H, W) in training and running ones in eval."""

    def __init__(self, num_features: int, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.groups = effective_groups(num_features, groups, "bgn")
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(self.groups))
        self.register_buffer("running_var", torch.ones(self.groups))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, H, W), got {tuple(x.shape)}")
        n, c, h, w = x.shape
        xg = x.reshape(n, self.groups, c // self.groups, h, w)
        if self.training:
            mean = xg.mean(dim=(0, 2, 3, 4))
            var = xg.var(dim=(0, 2, 3, 4), unbiased=False)
            with torch.no_grad():
                count = xg.numel() // self.groups
                unbiased = var.detach() * (count / max(count - 1, 1))
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach())
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        shape = (1, self.groups, 1, 1, 1)
        xhat = (xg - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return xhat.reshape(n, c, h, w) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _bgn(num_features: int, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Batch Group Normalization: per-group mean/var over (N, C/G, H, W); running stats in eval."""
    return BatchGroupNorm2d(num_features, groups=groups, eps=eps, momentum=momentum)


register_norm("bgn", _bgn, options=group_options(momentum="running-stat momentum"),
    check=group_check("bgn", 32),
    doc="Batch Group Normalization (Zhou et al. 2020): BN statistics over the batch and a group of C/G channels")
