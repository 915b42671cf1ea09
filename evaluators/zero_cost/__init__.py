"""Zero-cost proxies: one-minibatch scores of an untrained network (Abdelfattah et al., "Zero-Cost Proxies for
Lightweight NAS", ICLR 2021; Mellor et al., "Neural Architecture Search without Training", ICML 2021).

``score(name, model, (x, y), loss_fn=..., seed=0) -> float`` or one function per proxy. Each works on a deep copy
in training mode inside a forked, seeded RNG, so the caller's weights, train/eval flag and RNG are untouched, and a
score does not depend on the flag. Higher means "predicted better" for every proxy (the authors' convention, grasp's
sign included). The authors' CIFAR batch is 64 random training images (one batch, ``split_data=1``) for the ICLR
2021 proxies and 128 for naswot.

    >>> import torch, torch.nn as nn
    >>> _ = torch.manual_seed(0)
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    >>> batch = (torch.randn(8, 1, 2, 2), torch.randint(0, 2, (8,)))
    >>> round(score("params", net, batch))
    18
    >>> score("synflow", net, batch) > 0 and score("snip", net, batch, seed=1) > 0
    True
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn
import torch.nn.functional as F

from .baselines import macs, params
from .common import Batch, LossFn
from .kernels import jacob_cov, jacob_cov_from_jacobian, naswot, naswot_from_codes
from .pruning import fisher, grad_norm, grasp, snip
from .shared import NAMES as _SHARED_NAMES
from .shared import score_all
from .synflow import synflow

_Proxy = Callable[[nn.Module, Batch, LossFn, int], float]

PROXIES: dict[str, _Proxy] = {
    "synflow": lambda model, batch, loss_fn, seed: synflow(model, batch, seed=seed),
    "jacob_cov": lambda model, batch, loss_fn, seed: jacob_cov(model, batch, seed=seed),
    "naswot": lambda model, batch, loss_fn, seed: naswot(model, batch, seed=seed),
    "grad_norm": lambda model, batch, loss_fn, seed: grad_norm(model, batch, loss_fn=loss_fn, seed=seed),
    "snip": lambda model, batch, loss_fn, seed: snip(model, batch, loss_fn=loss_fn, seed=seed),
    "grasp": lambda model, batch, loss_fn, seed: grasp(model, batch, loss_fn=loss_fn, seed=seed),
    "fisher": lambda model, batch, loss_fn, seed: fisher(model, batch, loss_fn=loss_fn, seed=seed),
    "params": lambda model, batch, loss_fn, seed: params(model),
    "macs": lambda model, batch, loss_fn, seed: macs(model, batch),
}
"""Proxy name -> ``f(model, batch, loss_fn, seed)``; the proxies that use no loss or no randomness ignore those."""
if tuple(PROXIES) != _SHARED_NAMES:  # score_all must offer exactly what score offers
    raise ImportError(f"evaluators.zero_cost: score_all covers {_SHARED_NAMES}, score covers {tuple(PROXIES)}")


def list_proxies() -> list[str]:
    """The proxy names :func:`score` accepts."""
    return list(PROXIES)


def score(name: str, model: nn.Module, batch: Batch, *, loss_fn: LossFn = F.cross_entropy, seed: int = 0) -> float:
    """The zero-cost proxy ``name`` of ``model`` on ``batch = (x, y)``. ``loss_fn(logits, y)`` is used by grad_norm,
    snip, grasp and fisher; ``seed`` by every proxy that runs the network (it only matters for networks that draw
    random numbers in training mode, e.g. dropout)."""
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in PROXIES:
        raise ValueError(f"name: unknown zero-cost proxy {name!r}; valid: {', '.join(PROXIES)}")
    return PROXIES[key](model, batch, loss_fn, seed)


__all__ = [
    "PROXIES", "fisher", "grad_norm", "grasp", "jacob_cov", "jacob_cov_from_jacobian", "list_proxies", "macs",
    "naswot", "naswot_from_codes", "params", "score", "score_all", "snip", "synflow",
]
