"""Loss-based saliencies from pruning at initialisation, summed into one network score (Abdelfattah et al.,
"Zero-Cost Proxies for Lightweight NAS", ICLR 2021, §3): grad_norm, snip, grasp and fisher.

All four follow the released code (``foresight/pruners/measures/*.py``): one minibatch (``split_data=1``, so the
batch is used whole), the caller's loss (cross-entropy by default, the authors' ``loss_fn``), the scored layers being
every ``Conv2d`` and ``Linear`` (:func:`~.common.weight_layers`), and one number being the sum of each layer's score
array (``predictive.find_measures``'s ``sum_arr``), accumulated here in float64.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Batch, LossFn, check_batch, on_model, scratch_copy, weight_layers


def _weight_grads(net: nn.Module, batch: Batch, loss_fn: LossFn, *,
                  create_graph: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The scored weights and ∂L/∂W for each (``None`` where the loss does not depend on it)."""
    x, y = on_model(net, batch)
    weights = [m.weight for m in weight_layers(net)]
    loss = loss_fn(net(x), y)
    grads = torch.autograd.grad(loss, weights, create_graph=create_graph, allow_unused=True)
    return weights, list(grads)


def grad_norm(model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy, seed: int = 0) -> float:
    """Σ over layers of ‖∂L/∂W‖₂, the Euclidean norm of each scored layer's weight gradient (released
    ``grad_norm.py``: per-layer norms summed, not one global norm; a weight the loss ignores counts 0)."""
    batch = check_batch(batch)
    with scratch_copy(model, batch, seed=seed) as net:
        _, grads = _weight_grads(net, batch, loss_fn)
        return sum(float(g.norm()) for g in grads if g is not None)


def snip(model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy, seed: int = 0) -> float:
    """Σ |∂L/∂W ⊙ W| over the scored weights: SNIP's connection sensitivity (Lee et al. 2019) summed.

    The released ``snip.py`` multiplies each weight by a mask of ones and takes |∂L/∂mask|; by the chain rule that is
    |W ⊙ ∂L/∂W|, which is computed directly here (no patched ``forward``, so ``Conv2d`` subclasses with their own
    forward are scored too). Same number, one backward pass.
    """
    batch = check_batch(batch)
    with scratch_copy(model, batch, seed=seed) as net:
        weights, grads = _weight_grads(net, batch, loss_fn)
        return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)


class _HardSigmoid(nn.Module):
    """relu6(x + 3) / 6, which is ``nn.Hardsigmoid`` built from ops that torch can differentiate twice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x + 3.0) / 6.0


def _twice_differentiable(net: nn.Module) -> None:
    """Swap each ``nn.Hardsigmoid`` (torch has no derivative of its backward) for :class:`_HardSigmoid`."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Hardsigmoid):
                setattr(parent, name, _HardSigmoid())


def grasp(model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy, seed: int = 0) -> float:
    """Σ −W ⊙ (H g) over the scored weights, with g = ∂L/∂W and H the Hessian of L in those weights: GraSP's
    gradient-flow saliency (Wang et al. 2020), signed as in the released ``grasp.py`` (its T = 1, one iteration).

    H g is the gradient of z = Σ stop_grad(g)·g, as in the release. Deliberate difference: the release runs two
    forward passes (one for g, one with ``create_graph``); here one pass with ``create_graph`` serves both. The
    numbers agree for any network whose forward pass draws no random numbers; with dropout the release draws two
    masks and this draws one. ``nn.Hardsigmoid`` (the squeeze-excite gate of GhostNet) has no second derivative in
    torch; it is replaced by the same function built from ``relu6`` (equal values and derivatives away from ±3).
    """
    batch = check_batch(batch)
    with scratch_copy(model, batch, seed=seed) as net:
        _twice_differentiable(net)
        weights, grads = _weight_grads(net, batch, loss_fn, create_graph=True)
        return grasp_from_grads(weights, grads)


def grasp_from_grads(weights: list[torch.Tensor], grads: list[torch.Tensor | None]) -> float:
    """Σ −W ⊙ (H g) from ``grads`` = ∂L/∂W computed with ``create_graph=True`` (H g: the gradient of
    Σ stop_grad(g)·g)."""
    pairs = [(w, g) for w, g in zip(weights, grads) if g is not None and g.requires_grad]
    if not pairs:
        return 0.0
    z = sum((g.detach() * g).sum() for _, g in pairs)
    hg = torch.autograd.grad(z, [w for w, _ in pairs], allow_unused=True)
    return sum(float(-(w.detach() * h).sum()) for (w, _), h in zip(pairs, hg) if h is not None)


def fisher(model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy, seed: int = 0) -> float:
    """Fisher information of each output channel of each scored layer (Theis et al. 2018; Turner et al. 2020),
    summed as the released ``fisher.py`` sums it.

    With a the layer's output (its activation, before any norm) and ∂L/∂a its gradient, channel k of sample n gives
    g_nk = Σ_spatial a ⊙ ∂L/∂a, and Δ_k = ½ mean_n g_nk². The release broadcasts Δ_k to every weight of filter k
    before summing, so each channel counts fan-in times (in_channels/groups · kh · kw for a conv, in_features for a
    linear layer): the score is Σ_layers fan_in · Σ_k Δ_k. A layer called twice adds both calls.
    """
    batch = check_batch(batch)
    with scratch_copy(model, batch, seed=seed) as net:
        hooks = FisherHooks(weight_layers(net))
        try:
            x, y = on_model(net, batch)
            loss_fn(net(x), y).backward()
        finally:
            hooks.remove()
        return hooks.total


class FisherHooks:
    """Forward hooks on ``layers`` whose outputs' gradients, when a backward pass reaches them, add
    fan_in · ½ mean_n Σ_k g_nk² to :attr:`total` (:func:`fisher`)."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.total = 0.0
        self.handles = [layer.register_forward_hook(self._hook(layer)) for layer in layers]

    def _hook(self, layer: nn.Module) -> Any:
        fan_in = layer.weight[0].numel()

        def forward_hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> torch.Tensor:
            act = out.detach()
            out = out.clone()  # what runs next sees the clone, so an in-place op cannot overwrite act

            def backward_hook(grad: torch.Tensor) -> None:
                g = act * grad.detach()
                g_nk = g.flatten(2).sum(2) if g.dim() > 2 else g
                self.total += fan_in * float(0.5 * g_nk.pow(2).mean(0).sum())

            out.register_hook(backward_hook)
            return out
        return forward_hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
