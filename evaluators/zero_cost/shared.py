"""Several zero-cost proxies of one network from shared passes: what a bench or a screen that wants many proxies
calls instead of :func:`~evaluators.zero_cost.score` once per proxy.

The loss-based proxies (grad_norm, snip, fisher, grasp) all start from the same forward pass and ∂L/∂W on the same
seeded copy, and jacob_cov and naswot from the same forward pass on the input, so computing each from its own copy
repeats that work: here grad_norm, snip and fisher come out of one forward/backward pass (grasp's, when grasp is
asked for: its pass keeps the graph for the Hessian-gradient product), jacob_cov and naswot out of one forward pass
with the ReLU codes recorded and one backward pass to the input. Each copy is made as
:func:`~.common.scratch_copy` makes it, with the same seed, so every number equals its own function's (tests check
it); only the work is shared. One exception, within float rounding: when grasp is asked for, the shared pass runs on
grasp's copy, whose ``nn.Hardsigmoid`` modules are replaced by the same function built from ``relu6``, so the other
loss-based scores of a network with Hardsigmoid (GhostNet's squeeze-excite gate) can differ in the last digits.
synflow (its own float64, all-positive, batch-norm-free copy), ``params`` and ``macs`` are computed as usual.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .baselines import macs, params
from .common import Batch, LossFn, check_batch, on_model, scratch_copy, weight_layers
from .kernels import CodeHooks, input_jacobian, jacob_cov_from_jacobian, relu_modules
from .pruning import FisherHooks, _twice_differentiable, grasp_from_grads
from .synflow import synflow

LOSS_BASED = ("grad_norm", "snip", "fisher", "grasp")
KERNEL = ("jacob_cov", "naswot")
NAMES = ("synflow", "jacob_cov", "naswot", "grad_norm", "snip", "grasp", "fisher", "params", "macs")
"""Every proxy :func:`score_all` computes; the package checks that this is exactly the keys of its ``PROXIES``."""


def _loss_based(model: nn.Module, batch: Batch, names: set[str], loss_fn: LossFn, seed: int) -> dict[str, float]:
    """grad_norm, snip, fisher and grasp (those in ``names``) from one forward/backward pass."""
    batch = check_batch(batch)
    out: dict[str, float] = {}
    with scratch_copy(model, batch, seed=seed) as net:
        if "grasp" in names:
            _twice_differentiable(net)
        layers = weight_layers(net)
        hooks = FisherHooks(layers if "fisher" in names else [])
        try:
            x, y = on_model(net, batch)
            weights = [m.weight for m in layers]
            loss = loss_fn(net(x), y)
            grads = torch.autograd.grad(loss, weights, create_graph="grasp" in names, allow_unused=True)
        finally:
            hooks.remove()
        if "fisher" in names:
            out["fisher"] = hooks.total
        if "grad_norm" in names:
            out["grad_norm"] = sum(float(g.detach().norm()) for g in grads if g is not None)
        if "snip" in names:
            out["snip"] = sum(float((w.detach() * g.detach()).abs().sum()) for w, g in zip(weights, grads)
                              if g is not None)
        if "grasp" in names:
            out["grasp"] = grasp_from_grads(weights, list(grads))
    return out


def _kernels(model: nn.Module, batch: Batch, names: set[str], seed: int) -> dict[str, float]:
    """jacob_cov and naswot (those in ``names``) from one forward pass and one backward pass to the input."""
    batch = check_batch(batch, min_size=2)
    out: dict[str, float] = {}
    with scratch_copy(model, batch, seed=seed) as net:
        n = batch[0].shape[0]
        codes = CodeHooks(relu_modules(net, model) if "naswot" in names else [], n)
        try:
            x, _ = on_model(net, batch)
            x = x.detach().clone().requires_grad_("jacob_cov" in names)
            if "jacob_cov" in names:
                out["jacob_cov"] = jacob_cov_from_jacobian(input_jacobian(net(x), x))
            else:
                with torch.no_grad():
                    net(x)
        finally:
            codes.remove()
        if "naswot" in names:
            out["naswot"] = codes.score()
    return out


def score_all(names: Iterable[str], model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy,
              seed: int = 0) -> dict[str, float]:
    """``{name: score}`` for every proxy in ``names`` (names of :data:`~evaluators.zero_cost.PROXIES`), each equal
    to ``score(name, model, batch, loss_fn=loss_fn, seed=seed)``, computed from shared passes (module docstring)."""
    wanted = []
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in NAMES:
            raise ValueError(f"names: unknown zero-cost proxy {name!r}; valid: {', '.join(NAMES)}")
        wanted.append(key)
    asked = set(wanted)
    out: dict[str, float] = {}
    if asked & set(LOSS_BASED):
        out.update(_loss_based(model, batch, asked & set(LOSS_BASED), loss_fn, seed))
    if asked & set(KERNEL):
        out.update(_kernels(model, batch, asked & set(KERNEL), seed))
    if "synflow" in asked:
        out["synflow"] = synflow(model, batch, seed=seed)
    if "params" in asked:
        out["params"] = params(model)
    if "macs" in asked:
        out["macs"] = macs(model, batch)
    return {k: out[k] for k in wanted}
