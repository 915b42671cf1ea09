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

from typing import Any, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .baselines import macs, params
from .common import Batch, LossFn, check_batch, on_model, scratch_copy, weight_layers
from .kernels import _logdet, code_kernel, jacob_cov_from_jacobian
from .pruning import _twice_differentiable
from .synflow import synflow

LOSS_BASED = ("grad_norm", "snip", "fisher", "grasp")
KERNEL = ("jacob_cov", "naswot")


def _loss_based(model: nn.Module, batch: Batch, names: set[str], loss_fn: LossFn, seed: int) -> dict[str, float]:
    """grad_norm, snip, fisher and grasp (those in ``names``) from one forward/backward pass."""
    batch = check_batch(batch)
    out: dict[str, float] = {}
    with scratch_copy(model, batch, seed=seed) as net:
        if "grasp" in names:
            _twice_differentiable(net)
        layers = weight_layers(net)
        fisher_total = 0.0

        def hook(layer: nn.Module) -> Any:  # pruning.fisher's hook: Σ_layers fan_in · ½ mean_n Σ_k g_nk²
            fan_in = layer.weight[0].numel()

            def forward_hook(_m: nn.Module, _inp: Any, o: torch.Tensor) -> torch.Tensor:
                act = o.detach()
                o = o.clone()

                def backward_hook(grad: torch.Tensor) -> None:
                    nonlocal fisher_total
                    g = act * grad.detach()
                    g_nk = g.flatten(2).sum(2) if g.dim() > 2 else g
                    fisher_total += fan_in * float(0.5 * g_nk.pow(2).mean(0).sum())

                o.register_hook(backward_hook)
                return o
            return forward_hook

        handles = [layer.register_forward_hook(hook(layer)) for layer in layers] if "fisher" in names else []
        try:
            x, y = on_model(net, batch)
            weights = [m.weight for m in layers]
            loss = loss_fn(net(x), y)
            grads = torch.autograd.grad(loss, weights, create_graph="grasp" in names, allow_unused=True)
        finally:
            for h in handles:
                h.remove()
        if "fisher" in names:
            out["fisher"] = fisher_total
        if "grad_norm" in names:
            out["grad_norm"] = sum(float(g.detach().norm()) for g in grads if g is not None)
        if "snip" in names:
            out["snip"] = sum(float((w.detach() * g.detach()).abs().sum()) for w, g in zip(weights, grads)
                              if g is not None)
        if "grasp" in names:
            pairs = [(w, g) for w, g in zip(weights, grads) if g is not None and g.requires_grad]
            if not pairs:
                out["grasp"] = 0.0
            else:
                z = sum((g.detach() * g).sum() for _, g in pairs)
                hg = torch.autograd.grad(z, [w for w, _ in pairs], allow_unused=True)
                out["grasp"] = sum(float(-(w.detach() * h).sum()) for (w, _), h in zip(pairs, hg) if h is not None)
    return out


def _kernels(model: nn.Module, batch: Batch, names: set[str], seed: int) -> dict[str, float]:
    """jacob_cov and naswot (those in ``names``) from one forward pass and one backward pass to the input."""
    batch = check_batch(batch, min_size=2)
    out: dict[str, float] = {}
    with scratch_copy(model, batch, seed=seed) as net:
        relus = [m for m in net.modules() if "ReLU" in type(m).__name__]
        if "naswot" in names and not relus:
            raise ValueError(f"model: naswot needs ReLU-family modules (its codes are ReLU input signs); "
                             f"{type(model).__name__} has none")
        n = batch[0].shape[0]
        kernel = torch.zeros(n, n, dtype=torch.float64)
        calls = 0

        def record(_m: nn.Module, inp: Any) -> None:
            nonlocal kernel, calls
            kernel = kernel + code_kernel(inp[0].detach() > 0)
            calls += 1

        handles = [m.register_forward_pre_hook(record) for m in relus] if "naswot" in names else []
        try:
            x, _ = on_model(net, batch)
            x = x.detach().clone().requires_grad_("jacob_cov" in names)
            if "jacob_cov" in names:
                (jac,) = torch.autograd.grad(net(x).sum(), x)
                out["jacob_cov"] = jacob_cov_from_jacobian(jac.reshape(n, -1).cpu().numpy())
            else:
                with torch.no_grad():
                    net(x)
        finally:
            for h in handles:
                h.remove()
        if "naswot" in names:
            if not calls:
                raise ValueError(f"model: none of the {len(relus)} ReLU-family modules ran in the forward pass")
            out["naswot"] = _logdet(kernel)
    return out


def score_all(names: Iterable[str], model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy,
              seed: int = 0) -> dict[str, float]:
    """``{name: score}`` for every proxy in ``names`` (names of :data:`~evaluators.zero_cost.PROXIES`), each equal
    to ``score(name, model, batch, loss_fn=loss_fn, seed=seed)``, computed from shared passes (module docstring)."""
    from . import PROXIES

    wanted = []
    for name in names:
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in PROXIES:
            raise ValueError(f"names: unknown zero-cost proxy {name!r}; valid: {', '.join(PROXIES)}")
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
