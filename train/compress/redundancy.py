"""Per-layer redundancy from accumulated gradient matrices, and a pruning budget derived from it.

The exact estimator of the gradient-redundancy paper could not be read here; this is our documented reading.

Estimate. For a conv ``l`` with weight gradient ``G_b`` on mini-batch ``b`` reshaped to
``C_out × C_in·k²``, accumulate the output-side Gram matrix ``S_l = Σ_b G_b G_bᵀ`` (``C_out × C_out``).
Its eigenvalues ``λ_1 ≥ λ_2 ≥ …`` are the squared singular values of the stacked gradient
``[G_1 … G_B]``, so ``Σ λ`` is the gradient energy of the layer. With

    k_l = min { k : Σ_{i≤k} λ_i ≥ τ · Σ_i λ_i }       (τ = 0.9 by default)
    d_l = min(C_out, C_in·k²)
    ρ_l = clip(1 − k_l / d_l, 0, 1)

``ρ_l`` is the fraction of the layer's output directions that the gradients (what training asks
of the layer) do not use: a layer whose loss only depends on a rank-2 projection of its output has
rank-2 gradients in every batch, hence ``k_l ≤ 2``. Accumulating Gram matrices rather than summing
the gradients keeps directions that cancel in the mean gradient of a trained network.

Budget. Per-unit pruning ratios proportional to redundancy, clipped: ``r_u = min(r_max, α·ρ_u)``,
with the single scale ``α ≥ 0`` found by bisection so that the cost (MACs or params) after pruning
meets the target as closely as the rounding to whole channels allows (largest cost ≤ target).
A channel group's redundancy is the mean ``ρ`` of the convs that write it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Hashable, Mapping

import torch
import torch.nn as nn

from .structure import Structure


@dataclass(frozen=True)
class LayerRedundancy:
    """``k`` directions hold fraction ``tau`` of the gradient energy, out of ``d``; ``rho = 1 − k/d`` (clipped)."""

    k: int
    d: int
    rho: float
    energy: float


def energy_rank(eigenvalues: torch.Tensor, tau: float) -> int:
    """Smallest ``k`` with the top-``k`` eigenvalues holding at least ``tau`` of their sum (0 when all are 0)."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau: must be in (0, 1], got {tau!r}")
    lam = eigenvalues.double().clamp_min(0).sort(descending=True).values
    total = float(lam.sum())
    if total <= 0.0:
        return 0
    cum = torch.cumsum(lam, 0) / total
    return int(torch.searchsorted(cum, torch.tensor(tau - 1e-12, dtype=torch.float64)).item()) + 1


class GradientRedundancy:
    """Accumulates ``Σ_b G_b G_bᵀ`` of each conv weight's gradient; call :meth:`accumulate` after ``backward()``."""

    def __init__(self, model: nn.Module, names: list[str] | None = None) -> None:
        modules = dict(model.named_modules())
        if names is None:
            names = [n for n, m in modules.items() if isinstance(m, nn.Conv2d) and m.groups == 1]
        for n in names:
            if not isinstance(modules.get(n), (nn.Conv2d, nn.Linear)):
                raise ValueError(f"names: {n!r} is not a Conv2d/Linear module of the model")
        self.modules = {n: modules[n] for n in names}
        self.gram = {n: torch.zeros(m.weight.shape[0], m.weight.shape[0], dtype=torch.float64)
                     for n, m in self.modules.items()}
        self.batches = 0

    def accumulate(self) -> None:
        for n, m in self.modules.items():
            if m.weight.grad is not None:
                g = m.weight.grad.detach().reshape(m.weight.shape[0], -1).double().cpu()
                self.gram[n] += g @ g.T
        self.batches += 1

    def redundancy(self, tau: float = 0.9) -> dict[str, LayerRedundancy]:
        """:class:`LayerRedundancy` of every tracked layer (see the module doc for the formula)."""
        if self.batches == 0:
            raise ValueError("GradientRedundancy.redundancy: no mini-batch accumulated yet")
        out = {}
        for n, m in self.modules.items():
            lam = torch.linalg.eigvalsh(self.gram[n])
            k = energy_rank(lam, tau)
            d = min(m.weight.shape[0], m.weight[0].numel())
            rho = 0.0 if k == 0 else min(1.0, max(0.0, 1.0 - k / d))
            out[n] = LayerRedundancy(k=k, d=d, rho=rho, energy=float(lam.clamp_min(0).sum()))
        return out


def group_redundancy(structure: Structure, layers: Mapping[str, LayerRedundancy]) -> dict[str, float]:
    """Mean ``rho`` of the convs writing each prunable channel group (groups with no tracked writer: 0)."""
    out = {}
    for g in structure.prunable():
        rhos = [layers[n].rho for n, _ in g.producers if n in layers]
        out[g.name] = sum(rhos) / len(rhos) if rhos else 0.0
    return out


def allocate(redundancy: Mapping[Hashable, float], cost: Callable[[dict[Hashable, float]], float], target: float, *,
             max_ratio: float = 0.9, iters: int = 60) -> dict[Hashable, float]:
    """Ratios ``min(max_ratio, α·ρ_u)`` with the smallest ``α`` whose ``cost(ratios) <= target``.

    ``cost`` must not increase with the ratios. Raises ``ValueError`` when even ``max_ratio`` on every
    redundant unit misses the target.
    """
    if not 0.0 < max_ratio < 1.0:
        raise ValueError(f"max_ratio: must be in (0, 1), got {max_ratio!r}")
    rho = {u: float(r) for u, r in redundancy.items()}
    if any(r < 0 for r in rho.values()):
        raise ValueError("redundancy: values must be >= 0")

    def ratios(alpha: float) -> dict[Hashable, float]:
        return {u: min(max_ratio, alpha * r) for u, r in rho.items()}

    if cost(ratios(0.0)) <= target:
        return ratios(0.0)
    positive = [r for r in rho.values() if r > 0]
    if not positive:
        raise ValueError("redundancy: every unit has zero redundancy, so no budget can be allocated; "
                         "lower tau or use the global Taylor ranking")
    hi = max_ratio / min(positive)
    if cost(ratios(hi)) > target:
        raise ValueError(f"target: cost {cost(ratios(hi)):.4g} at the maximum ratio {max_ratio} still exceeds the "
                         f"target {target:.4g}; raise max_ratio or relax the target")
    lo = 0.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if cost(ratios(mid)) <= target:
            hi = mid
        else:
            lo = mid
    return ratios(hi)


def redundancy_widths(structure: Structure, layers: Mapping[str, LayerRedundancy], target: float, *,
                      metric: str = "macs", max_ratio: float = 0.9, min_channels: int = 1) -> dict[str, int]:
    """Per-group widths from :func:`allocate` over group redundancies so that ``cost[metric] <= target``."""
    rho = group_redundancy(structure, layers)
    base = structure.sizes()

    def widths(ratios: Mapping[Hashable, float]) -> dict[str, int]:
        return {g: max(min_channels, round(base[g] * (1.0 - r))) for g, r in ratios.items()}

    def cost(ratios: dict[Hashable, float]) -> float:
        return structure.cost({**base, **widths(ratios)})[metric]

    return widths(allocate(rho, cost, target, max_ratio=max_ratio))
