"""Normaliser choices: factories ``f(num_features, **options) -> nn.Module``."""
from __future__ import annotations

import torch.nn as nn

from ..registry import OptionSpec, register_norm


def _bn(num_features: int, *, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    """Batch normalisation (Ioffe & Szegedy 2015)."""
    return nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)


register_norm("bn", _bn, options={
    "momentum": OptionSpec(float, 0.1, "running-stat momentum", lambda v: 0 < v <= 1, "in (0, 1]"),
    "eps": OptionSpec(float, 1e-5, "variance epsilon", lambda v: v > 0, "> 0")})

from .._autoload import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
