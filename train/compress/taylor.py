"""First-order Taylor channel importance with gates after BatchNorm (Molchanov et al., CVPR 2019).

"Importance Estimation for Neural Network Pruning", Eq. 8 with the gate as the parameter: a gate
``g`` (value 1) multiplies each channel right after every ``BatchNorm2d`` that normalises it
(:mod:`.structure`), and the importance of channel ``c`` on mini-batch ``b`` is

    I_c(b) = ( Σ_{gates of c} g_c · ∂L_b/∂g_c )²

where ``L_b`` is the batch's loss, so ∂L_b/∂g_c already sums over the images of the batch. The
sum runs over every gate that addresses the channel: a residual stream is normalised by several
norms, zeroing all of them is what removing the channel means, and the first-order change of the
loss is the sum of their terms (the official code shares one gate across a skip connection for the
same reason). A gate after BN is equivalent to the paper's "BN scale Taylor FO" variant, since
``g·(γ·x̂ + β)`` gives ``∂L/∂g = γ·∂L/∂γ + β·∂L/∂β`` at ``g = 1``; the hooks make the tied sum exact.

Scores are averaged over the mini-batches seen since the last pruning step and ranked *globally*
without per-layer normalisation (the paper; ``l2_normalization_per_layer=False`` in NVlabs'
reference). ``normalize="l2"`` divides each group's scores by their ℓ2 norm (Molchanov et al.
2017, "Pruning Convolutional Neural Networks for Resource Efficient Inference", Eq. 6).
Pruned channels keep their gate at 0 (masking) until :meth:`TaylorPruner.finalize` removes them
physically (:mod:`.surgery`), which is exact because the gate is the only path of the channel.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from space import Arch

from .structure import Structure, analyse
from .surgery import apply_pruning

NORMALIZATIONS = ("none", "l2")
METRICS = ("macs", "params")


class TaylorPruner:
    """Gates, importance accumulation and (masked) removal of the prunable channel groups of ``model``.

    Call :meth:`accumulate` after every ``loss.backward()``; :meth:`prune_global` or
    :meth:`prune_to_widths` zero the gates of the least important channels; :meth:`finalize`
    returns the physically smaller network.
    """

    def __init__(self, model: nn.Module, structure: Structure | None = None, *, normalize: str = "none",
                 min_channels: int = 1) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize: must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
        if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
            raise ValueError(f"min_channels: must be an integer >= 1, got {min_channels!r}")
        self.model = model
        self.structure = structure if structure is not None else analyse(model)
        self.normalize, self.min_channels = normalize, min_channels
        groups = self.structure.prunable()
        if not groups:
            reasons = "; ".join(f"{g.name}: {g.reason}" for g in self.structure.groups.values())
            raise ValueError(f"model: no channel group can be pruned ({reasons})")
        p = next(model.parameters())
        device = p.device
        self.gates = {g.name: torch.ones(g.size, device=device, dtype=p.dtype, requires_grad=True) for g in groups}
        self._sum = {name: torch.zeros(len(gate), dtype=torch.float64, device=device)
                     for name, gate in self.gates.items()}
        self.batches = 0
        modules = dict(model.named_modules())
        self._handles = [modules[n].register_forward_hook(_gate_hook(self.gates[g.name]))
                         for g in groups for n in g.gates]

    # ---------------------------------------------------------------- importance

    def accumulate(self) -> None:
        """Add this mini-batch's (Σ_gates ∂L/∂g)² per channel and clear the gates' gradients."""
        for name, gate in self.gates.items():
            if gate.grad is not None:
                self._sum[name] += gate.grad.detach().double().pow(2)
                gate.grad = None
        self.batches += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """Mean importance per channel since the last reset (pruned: ``inf``), optionally ℓ2-normalised per group."""
        if self.batches == 0:
            raise ValueError("TaylorPruner.scores: no mini-batch accumulated yet; call accumulate() after backward()")
        out = {}
        for name, total in self._sum.items():
            s = total / self.batches
            if self.normalize == "l2":
                s = s / (s.norm() + 1e-30)
            out[name] = torch.where(self.alive(name), s, torch.full_like(s, float("inf"))).cpu()
        return out

    def reset(self) -> None:
        for total in self._sum.values():
            total.zero_()
        self.batches = 0

    # ---------------------------------------------------------------- masks

    def alive(self, name: str) -> torch.Tensor:
        return self.gates[name].detach() > 0

    def sizes(self) -> dict[str, int]:
        sizes = self.structure.sizes()
        sizes.update({name: int(self.alive(name).sum()) for name in self.gates})
        return sizes

    def cost(self) -> dict[str, int]:
        """``{"macs", "params"}`` of the network with the pruned channels removed."""
        return self.structure.cost(self.sizes())

    def _remove(self, name: str, index: int) -> None:
        with torch.no_grad():
            self.gates[name][index] = 0.0

    def prune_global(self, target: float, *, metric: str = "macs") -> int:
        """Remove the globally least important channels, one at a time, until ``cost[metric] <= target``.

        Groups never go below ``min_channels``. Returns the number of channels removed.
        """
        if metric not in METRICS:
            raise ValueError(f"metric: must be one of {', '.join(METRICS)}, got {metric!r}")
        scores = self.scores()
        order = sorted((float(v), name, i) for name, sc in scores.items() for i, v in enumerate(sc.tolist())
                       if v != float("inf"))
        sizes = self.sizes()
        cost = self.structure.cost(sizes)[metric]
        removed = 0
        for _, name, i in order:
            if cost <= target:
                break
            if sizes[name] <= self.min_channels:
                continue
            self._remove(name, i)
            sizes[name] -= 1
            removed += 1
            cost = self.structure.cost(sizes)[metric]
        return removed

    def prune_to_widths(self, widths: dict[str, int]) -> int:
        """Within each group, remove its least important channels until it has ``widths[group]`` left."""
        scores = self.scores()
        removed = 0
        for name, width in widths.items():
            if name not in self.gates:
                raise ValueError(f"widths: {name!r} is not a prunable channel group; prunable: {', '.join(self.gates)}")
            alive = int(self.alive(name).sum())
            n = alive - max(int(width), self.min_channels)
            if n > 0:
                for i in torch.argsort(scores[name], stable=True)[:n].tolist():
                    self._remove(name, i)
                removed += n
        return removed

    def keep(self) -> dict[str, torch.Tensor]:
        """Kept channel indices of every prunable group."""
        return {name: torch.nonzero(self.alive(name)).flatten().cpu() for name in self.gates}

    # ---------------------------------------------------------------- surgery

    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def finalize(self) -> tuple[Arch, nn.Module]:
        """Remove the gates and return ``(arch, model)`` of the physically pruned network (CPU)."""
        self.remove_hooks()
        return apply_pruning(self.model, self.structure, self.keep())


def _gate_hook(gate: torch.Tensor):
    def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
        return out * gate.view(1, -1, 1, 1)
    return hook


def taylor_scores(model: nn.Module, batches: Any, *, loss_fn: Any = None,
                  structure: Structure | None = None) -> dict[str, torch.Tensor]:
    """Importance of every channel of every prunable group, averaged over ``batches`` of ``(x, y)``.

    Gradients only: the weights are not changed (BN running statistics are, in train mode, as in
    training). ``loss_fn`` defaults to cross-entropy.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    pruner = TaylorPruner(model, structure)
    device = next(model.parameters()).device
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x.to(device)), y.to(device)).backward()
            pruner.accumulate()
        return pruner.scores()
    finally:
        pruner.remove_hooks()
        model.zero_grad(set_to_none=True)
