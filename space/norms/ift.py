"""Invariance feature transform, "ift" (Ye, Zhou, McKinney, Liu, Zhou & Zhdanov, "Exploiting
Invariance in Training Deep Neural Networks", arXiv 2103.16634, 2021) — a documented reading.

The paper builds two invariances into the input of each conv: scale invariance "with local
statistics in the data", and GL(n) invariance "with global statistics extracted from a batch",
building on the same first author's network deconvolution (Ye et al., ICLR 2020; their released
models/deconv.py), which whitens the im2col patches a conv reads (spatial and channel decorrelation).
Only the abstract of the IFT paper could be read here, so the local standardisation (step 1), the
centre-row output (step 2's last line) and the affine (step 3) are readings; step 2 follows network
deconvolution's code.

1. local standardisation — per sample n and position p, over the k×k neighbourhood (option
   ``window``, k=3) and all channels:
       μ_n(p) = mean_{c, q∈N(p)} x_{n,c,q},  σ²_n(p) = mean_{c, q∈N(p)} x²_{n,c,q} − μ_n(p)²,
       x̃ = (x − μ_n(p)) / √(σ²_n(p) + ε_local)
   (border windows average only the pixels inside). x̃ is unchanged by x ↦ a·x + b with a > 0
   constant over each neighbourhood (up to ε_local): locally invariant to intensity scale and offset;
2. patch whitening (network deconvolution) — the im2col patches of x̃ (``patch``×``patch``, zero
   padded, stride 1), split into consecutive groups of B = gcd(``group_size``, C) channels, are vectors
   of dimension d = B·patch²; as in network deconvolution one mean μ and one covariance
   Σ = (1/M) Σ_m (P_m − μ)(P_m − μ)ᵀ + εI are pooled over every patch of every group (M vectors), and
   D = Σ^(−1/2) by its coupled Newton–Schulz iteration (``iterations``, 5; ε = 1e-2 as that code), so the
   whitened patches D(P − μ) have covariance ≈ I (exactly (Σ+εI)^(−1/2) Σ (Σ+εI)^(−1/2) as the
   iteration converges). A normaliser must return a feature map, so the output at each pixel and channel
   is the centre coordinate of its whitened patch: a grouped patch×patch conv whose kernels are the
   centre rows of D (network deconvolution's "deconvolution filters", which that paper shows as
   centre-surround). Network deconvolution instead folds the whole D into the following conv's weight;
   here the following conv is the block's. Statistics use every patch (network deconvolution subsamples
   pixels with stride 3 for speed). Eval uses the running μ and D (the first batch initialises them,
   then exponential averages with ``momentum``, as that code);
3. a per-channel affine γ, β (network deconvolution has none because its conv follows directly;
   as a normaliser choice this one keeps BN's affine so that it can replace BN anywhere).

GL(n) invariance (the paper's property of step 2): for any invertible G acting on the patch vectors,
P ↦ G P, ZCA-whitened patches change only by an orthogonal matrix, so the Gram matrix of the whitened
patches (their inner products) is unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import OptionSpec, register_norm
from ._whiten import newton_schulz_isqrt


def local_standardize(x: torch.Tensor, window: int, eps: float) -> torch.Tensor:
    """(x − μ)/√(σ² + ε) with μ, σ² over all channels and the ``window``×``window`` neighbourhood of each pixel."""
    pad = window // 2
    mean = F.avg_pool2d(x.mean(1, keepdim=True), window, 1, pad, count_include_pad=False)
    sq = F.avg_pool2d(x.square().mean(1, keepdim=True), window, 1, pad, count_include_pad=False)
    var = (sq - mean.square()).clamp_min(0.0)
    return (x - mean) * torch.rsqrt(var + eps)


def group_patches(x: torch.Tensor, patch: int, block: int) -> torch.Tensor:
    """im2col patches of ``x`` (N, C, H, W), one row per (sample, channel group, pixel): (N·C/B·H·W, B·patch²),
    columns ordered (channel in group, patch row, patch column)."""
    n, c, h, w = x.shape
    cols = F.unfold(x, patch, padding=patch // 2)  # (N, C·p², H·W), channel-major
    return cols.view(n, c // block, block * patch * patch, h * w).permute(0, 1, 3, 2).reshape(-1, block * patch ** 2)


class PatchWhitening(nn.Module):
    """Network deconvolution's whitening of B-channel im2col patches, returned as each patch's whitened centre."""

    def __init__(self, num_features: int, *, patch: int, group_size: int, iterations: int, eps: float,
                 momentum: float) -> None:
        super().__init__()
        self.block = math.gcd(group_size, num_features)
        self.patch, self.iterations, self.eps, self.momentum = patch, iterations, eps, momentum
        d = self.block * patch * patch
        self.register_buffer("running_mean", torch.zeros(d))
        self.register_buffer("running_deconv", torch.eye(d))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"block={self.block}, patch={self.patch}, iterations={self.iterations}, eps={self.eps}, "
                f"momentum={self.momentum}")

    def statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, D = (Σ + εI)^(−1/2)) of the batch's patches (training) or the running ones (eval)."""
        if not self.training:
            return self.running_mean, self.running_deconv
        rows = group_patches(x, self.patch, self.block)
        mean = rows.mean(0)
        centred = rows - mean
        eye = torch.eye(rows.shape[1], dtype=rows.dtype, device=rows.device)
        deconv = newton_schulz_isqrt(centred.T @ centred / rows.shape[0] + self.eps * eye, self.iterations)
        with torch.no_grad():
            f = 1.0 if int(self.num_batches_tracked) == 0 else self.momentum
            self.running_mean.mul_(1 - f).add_(f * mean.detach())
            self.running_deconv.mul_(1 - f).add_(f * deconv.detach())
            self.num_batches_tracked.add_(1)
        return mean, deconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, deconv = self.statistics(x)
        b, p = self.block, self.patch
        centre = (p * p) // 2 + p * p * torch.arange(b, device=x.device)  # row of (channel i, patch centre)
        rows = deconv[centre]  # (B, B·p²): the deconvolution filters
        weight = rows.view(b, b, p, p).repeat(x.shape[1] // b, 1, 1, 1)
        bias = -(rows @ mean[:, None]).squeeze(1).repeat(x.shape[1] // b)  # (B, 1): fvcore counts 2-D matmuls
        return F.conv2d(x, weight, bias, padding=p // 2, groups=x.shape[1] // b)


class InvarianceFeatureTransform(nn.Module):
    """Local standardisation (scale invariance) → im2col patch whitening (GL(n)) → per-channel affine."""

    def __init__(self, num_features: int, *, window: int = 3, patch: int = 3, group_size: int = 16,
                 iterations: int = 5, eps: float = 1e-2, local_eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.window, self.local_eps = window, local_eps
        self.decorrelate = PatchWhitening(num_features, patch=patch, group_size=group_size, iterations=iterations,
                                          eps=eps, momentum=momentum)
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


def _ift(num_features: int, *, window: int = 3, patch: int = 3, group_size: int = 16, iterations: int = 5,
         eps: float = 1e-2, momentum: float = 0.1) -> nn.Module:
    """Invariance feature transform (Ye et al. 2021): local standardisation + patch whitening + affine."""
    return InvarianceFeatureTransform(num_features, window=window, patch=patch, group_size=group_size,
                                      iterations=iterations, eps=eps, momentum=momentum)


register_norm("ift", _ift, options={
    "window": OptionSpec(int, 3, "neighbourhood k of the local statistics", lambda v: v >= 1 and v % 2 == 1,
                         "odd, >= 1"),
    "patch": OptionSpec(int, 3, "im2col patch size whitened (the following conv's)", lambda v: v >= 1 and v % 2 == 1,
                        "odd, >= 1"),
    "group_size": OptionSpec(int, 16, "channels per whitened patch (gcd with the width)", lambda v: v >= 1, ">= 1"),
    "iterations": OptionSpec(int, 5, "Newton–Schulz iterations", lambda v: 1 <= v <= 30, "in [1, 30]"),
    "eps": OptionSpec(float, 1e-2, "ε added to the covariance diagonal", lambda v: v > 0, "> 0"),
    "momentum": OptionSpec(float, 0.1, "running-stat momentum", lambda v: 0 < v <= 1, "in (0, 1]")},
    doc="Invariance feature transform (Ye et al. 2021): local-statistics standardisation, then network "
        "deconvolution's im2col patch whitening (spatial + channel, Newton–Schulz), then affine")
