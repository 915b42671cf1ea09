"""GN improved with batch statistics ("gn_batch"; Gunawan, Yin & Zhang, "Understanding and Improving Group
Normalization", arXiv 2207.01972, 2022).

The layer the authors released as their proposal (agusgun/CS-570-Project, ``GNPlusSequentialGNFirst``,
the "NewGN" of their analysis notebooks): group-normalise, then batch-normalise the GN output, and mix
the two with a learned weight λ = sigmoid(p):

    z = GN(x)                                 (per sample, groups of C/G channels, no affine)
    y = γ ⊙ (λ·z + (1 − λ)·BN(z)) + β,         λ = sigmoid(p), p initialised to 1 (λ ≈ 0.73)

Read, not taken from the paper text (only its abstract was reachable): (1) the authors' code computes
BN(z)'s mean and standard deviation over the batch only, per channel *and position*, and uses batch
statistics in eval too; here BN(z) is standard batch normalisation (per channel over N, H, W, running
statistics in eval, ``momentum``), so eval does not depend on the batch and a batch of one is defined;
(2) their code divides by σ + ε with the unbiased σ; here both standardisations use √(σ² + ε) with the
biased σ² (as GN and BN). Groups follow GN's rule G = min(``groups``, C) (see :mod:`space.norms.gn`).
The method of Zhou et al. 2020 this choice used to implement is ``bgn``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import register_norm
from .gn import effective_groups, group_check, group_options


class GNPlus2d(nn.Module):
    """γ ⊙ (λ·GN(x) + (1 − λ)·BN(GN(x))) + β with a learned λ = sigmoid(p)."""

    def __init__(self, num_features: int, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.groups = effective_groups(num_features, groups, "gn_batch")
        self.eps = eps
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.mix = nn.Parameter(torch.ones(1))  # λ = sigmoid(mix), the authors' initial value 1
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, groups={self.groups}, eps={self.eps}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.group_norm(x, self.groups, eps=self.eps)
        lam = torch.sigmoid(self.mix)
        y = lam * z + (1 - lam) * self.bn(z)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _gn_batch(num_features: int, *, groups: int = 32, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """GN then BN of its output, mixed by a learned sigmoid weight (Gunawan et al. 2022)."""
    return GNPlus2d(num_features, groups=groups, eps=eps, momentum=momentum)


register_norm("gn_batch", _gn_batch, options=group_options(momentum="running-stat momentum of the BN part"),
    check=group_check("gn_batch", 32),
    doc="GN improved with batch statistics (Gunawan et al. 2022): λ·GN(x) + (1−λ)·BN(GN(x)), λ = sigmoid(p) learned")
