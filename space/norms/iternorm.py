"""IterNorm: iterative batch whitening (Huang, Zhou, Zhu, Liu & Shao, "Iterative Normalization:
Beyond Standardization towards Efficient Whitening", CVPR 2019, Algorithm 1).

Per group of m consecutive channels (option ``group_size``, m=64 as the paper; a width below m is
one group of all channels; a width that m does not divide gets one last, smaller group of the
remaining C mod m channels — a documented choice, the paper's ResNets have widths m divides):

    μ = (1/M) X 1,  X_c = X − μ,  Σ = (1/M) X_c X_cᵀ + εI,  Σ_N = Σ / tr(Σ),
    P_0 = I,  P_k = 1.5 P_{k−1} − 0.5 P_{k−1}³ Σ_N  (k = 1..T, option ``iterations``, T=5),
    Σ^(−1/2) ≈ P_T / √tr(Σ),  X̂ = Σ^(−1/2) X_c,  y = γ ⊙ X̂ + β (per channel),

with M = N·H·W samples. With finite T the output is only approximately white — the paper's point
(T trades whitening strength for conditioning). Eval uses the running mean and the running
whitening matrix (exponential averages, ``momentum``), as the paper's Algorithm 1.

``iterations`` is limited to 1..10: this uncoupled Newton iteration is numerically unstable once it
has converged (Higham, "Functions of Matrices", 2008, §6.4): rounding errors grow geometrically, and
measured in float64 the error of P_T/√tr(Σ) against eigh's Σ^(−1/2) is 5e-15 at T=10 but 3e+07 at
T=50 for a covariance of condition number 6, and NaN from T≈20 at condition number 100.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..registry import OptionSpec, register_norm
from ._whiten import GroupWhitening, iternorm_isqrt


class IterNorm(nn.Module):
    """IterNorm batch whitening over channel groups, then a per-channel affine γ, β."""

    def __init__(self, num_features: int, *, group_size: int = 64, iterations: int = 5, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        self.whiten = GroupWhitening(num_features, group_size=group_size, iterations=iterations, eps=eps,
                                     momentum=momentum, isqrt=iternorm_isqrt)
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def reset_nas_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)

    def whitening_matrices(self) -> list[torch.Tensor]:
        """The running whitening matrices, one (size × size) per group (the eval-mode Σ^(−1/2))."""
        mats = list(self.whiten.running_wm.unbind(0))
        return mats + ([self.whiten.running_wm_rest] if self.whiten.rest else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.whiten(x)
        if self.weight is None:
            return y
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _iternorm(num_features: int, *, group_size: int = 64, iterations: int = 5, eps: float = 1e-5,
              momentum: float = 0.1) -> nn.Module:
    """IterNorm (Huang et al. CVPR 2019): group-wise batch whitening by T Newton iterations."""
    return IterNorm(num_features, group_size=group_size, iterations=iterations, eps=eps, momentum=momentum)


register_norm("iternorm", _iternorm, options={
    "group_size": OptionSpec(int, 64, "channels per whitening group m (a smaller width is one group)",
                             lambda v: v >= 1, ">= 1"),
    "iterations": OptionSpec(int, 5, "Newton iterations T", lambda v: 1 <= v <= 10, "in [1, 10]"),
    "eps": OptionSpec(float, 1e-5, "ε added to the covariance diagonal", lambda v: v > 0, "> 0"),
    "momentum": OptionSpec(float, 0.1, "running-stat momentum", lambda v: 0 < v <= 1, "in (0, 1]")},
    doc="IterNorm (Huang et al. 2019): whitening of m-channel groups, Σ^-1/2 by T Newton iterations")
