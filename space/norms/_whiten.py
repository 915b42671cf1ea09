"""Shared maths of the whitening normalisers (IterNorm, IFT): channel groups and Newton iterations.

Not a choice itself (a leading ``_`` keeps the autoloader from importing it as one).
"""
from __future__ import annotations

import torch


def group_sizes(channels: int, group_size: int) -> tuple[int, int, int]:
    """Split ``channels`` into consecutive groups of ``group_size``: ``(full_groups, size, remainder)``.

    ``channels < group_size`` gives one group of all channels; otherwise ``channels // group_size``
    groups of ``group_size`` and, when it does not divide, one last group of the remaining channels.
    """
    if channels < 1 or group_size < 1:
        raise ValueError(f"channels and group_size must be >= 1, got {channels} and {group_size}")
    size = min(group_size, channels)
    return channels // size, size, channels % size


def iternorm_isqrt(sigma: torch.Tensor, iterations: int) -> torch.Tensor:
    """Σ^(-1/2) by IterNorm's Newton iterations (Huang et al., CVPR 2019, Algorithm 1).

    Σ_N = Σ / tr(Σ); P_0 = I; P_k = 1.5·P_{k-1} − 0.5·P_{k-1}³·Σ_N (k = 1..T); returns P_T / √tr(Σ).
    ``sigma`` is (..., d, d), symmetric positive definite; the trace normalisation puts Σ_N's
    eigenvalues in (0, 1], where the iteration converges (monotonically in each eigen-direction).
    """
    d = sigma.shape[-1]
    trace = sigma.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    sigma_n = sigma / trace
    eye = torch.eye(d, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    p = eye
    for _ in range(iterations):
        p = 1.5 * p - 0.5 * (p @ p @ p @ sigma_n)
    return p / trace.sqrt()


def newton_schulz_isqrt(sigma: torch.Tensor, iterations: int) -> torch.Tensor:
    """Σ^(-1/2) by the coupled Newton–Schulz iteration of network deconvolution (Ye et al., ICLR 2020).

    Y_0 = Σ/‖Σ‖_F, Z_0 = I; T_k = ½(3I − Z_{k-1} Y_{k-1}); Y_k = Y_{k-1} T_k; Z_k = T_k Z_{k-1};
    returns Z_T / √‖Σ‖_F (Y_T → (Σ/‖Σ‖)^(1/2), Z_T → (Σ/‖Σ‖)^(-1/2)).
    """
    d = sigma.shape[-1]
    norm = torch.linalg.matrix_norm(sigma)[..., None, None]
    y = sigma / norm
    eye = torch.eye(d, dtype=sigma.dtype, device=sigma.device).expand_as(sigma)
    z = eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    return z / norm.sqrt()


def grouped(x: torch.Tensor, groups: int, size: int) -> torch.Tensor:
    """(N, C, H, W) channels ``[0, groups·size)`` as (groups, size, N·H·W) — one data matrix per group."""
    n, _, h, w = x.shape
    return x[:, : groups * size].reshape(n, groups, size, h * w).permute(1, 2, 0, 3).reshape(groups, size, -1)


def ungrouped(y: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`grouped`: (groups, size, N·H·W) back to (N, groups·size, H, W)."""
    groups, size, _ = y.shape
    return y.reshape(groups, size, n, h * w).permute(2, 0, 1, 3).reshape(n, groups * size, h, w)


class GroupWhitening(torch.nn.Module):
    """Batch whitening of consecutive channel groups, with running estimates for eval (no affine).

    Training: per group, X (size × N·H·W) is centred, Σ = (1/M)·X_c X_cᵀ + εI, and X̂ = Σ^(-1/2) X_c
    with Σ^(-1/2) from ``isqrt`` (differentiated through, as in both papers' code). Eval uses the
    running mean and the running whitening matrix, both updated as r ← (1−momentum)·r + momentum·batch.
    ``warm_start`` copies the first batch's statistics into the running ones (network deconvolution)
    instead of averaging them into μ=0, W=I (IterNorm).
    """

    def __init__(self, num_features: int, *, group_size: int, iterations: int, eps: float, momentum: float,
                 isqrt, warm_start: bool = False) -> None:
        super().__init__()
        self.num_features = num_features
        self.groups, self.size, self.rest = group_sizes(num_features, group_size)
        self.iterations, self.eps, self.momentum = iterations, eps, momentum
        self.isqrt, self.warm_start = isqrt, warm_start
        eye = torch.eye(self.size).expand(self.groups, -1, -1).clone()
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_wm", eye)
        self.register_buffer("running_wm_rest", torch.eye(self.rest))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"{self.num_features}, groups={self.groups}x{self.size}" + (f"+{self.rest}" if self.rest else "")
                + f", iterations={self.iterations}, eps={self.eps}, momentum={self.momentum}")

    def _part(self, data: torch.Tensor, running_mean: torch.Tensor, running_wm: torch.Tensor) -> torch.Tensor:
        """Whiten ``data`` (g, s, M); ``running_mean`` (g, s, 1) and ``running_wm`` (g, s, s) are buffer views."""
        if not self.training:
            return running_wm @ (data - running_mean)
        mean = data.mean(-1, keepdim=True)
        centred = data - mean
        eye = torch.eye(data.shape[1], dtype=data.dtype, device=data.device)
        sigma = centred @ centred.transpose(1, 2) / data.shape[-1] + self.eps * eye
        wm = self.isqrt(sigma, self.iterations)
        with torch.no_grad():
            factor = 1.0 if (self.warm_start and int(self.num_batches_tracked) == 0) else self.momentum
            running_mean.mul_(1.0 - factor).add_(factor * mean.detach())
            running_wm.mul_(1.0 - factor).add_(factor * wm.detach())
        return wm @ centred

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, H, W), got {tuple(x.shape)}")
        n, _, h, w = x.shape
        full = self.groups * self.size
        mean_full = self.running_mean[:full].view(self.groups, self.size, 1)
        out = ungrouped(self._part(grouped(x, self.groups, self.size), mean_full, self.running_wm), n, h, w)
        if self.rest:
            mean_rest = self.running_mean[full:].view(1, self.rest, 1)
            rest = grouped(x[:, full:], 1, self.rest)
            out = torch.cat([out, ungrouped(self._part(rest, mean_rest, self.running_wm_rest[None]), n, h, w)], 1)
        if self.training:
            self.num_batches_tracked.add_(1)
        return out
