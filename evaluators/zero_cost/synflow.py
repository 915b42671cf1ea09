"""SynFlow (Tanaka et al. 2020) as a network score (Abdelfattah et al., ICLR 2021, §3): data-free, one backward pass."""
from __future__ import annotations

import itertools

import torch
import torch.nn as nn

from .common import Batch, check_batch, scratch_copy, weight_layers


class _Copy(nn.Module):
    """Identity that returns a new tensor, as batch norm did: an in-place op after it cannot overwrite its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


def _drop_batchnorm(net: nn.Module) -> None:
    """Replace every batch-norm module by an identity (the release's ``bn=False`` copy makes their forward a no-op)."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _Copy())


def synflow(model: nn.Module, batch: Batch, *, seed: int = 0) -> float:
    """Σ |W ⊙ ∂R/∂W| over every ``Conv2d``/``Linear`` weight, R = Σ f_|θ|(1): the synaptic flow of the network with
    every parameter made positive, evaluated on one all-ones input.

    Follows the released ``synflow.py`` as registered under ``synflow`` (``bn=False``): batch norm is removed, every
    floating parameter and buffer is replaced by its absolute value, the network runs in float64 on one input of ones
    shaped like one sample of ``batch`` (only ``x``'s per-sample shape is read), and R is the sum of its outputs. For a
    bias-free chain of L linear layers R = 1ᵀ|W_L|…|W_1|1 and the score is L·R (R is degree-1 homogeneous in each
    layer). Dropout, if any, runs in training mode, hence ``seed``.

    Deliberate difference: the removed batch norm returns a copy of its input, not the input itself, so that an
    in-place activation after it cannot overwrite a tensor that backward needs (the release's no-op fails there,
    e.g. on residual-attention blocks); the values are the same.
    """
    x, _ = check_batch(batch)
    with scratch_copy(model, batch, seed=seed) as net:
        _drop_batchnorm(net)
        net.double()
        with torch.no_grad():
            for t in itertools.chain(net.parameters(), net.buffers()):
                if t.is_floating_point():
                    t.abs_()
        weights = [m.weight for m in weight_layers(net)]
        if not weights:
            return 0.0
        ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=weights[0].device)
        grads = torch.autograd.grad(net(ones).sum(), weights, allow_unused=True)
        return sum(float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None)
