"""Group normalisation (Wu & He, "Group Normalization", ECCV 2018, Eq. 1–3), timm's ``GroupNorm``.

Per sample and group of C/G channels: x̂ = (x − μ)/√(σ² + ε) with μ, σ² over (C/G, H, W); then a
per-channel affine γ, β. No batch statistics, so train and eval are the same function.

Group rule (documented choice): G = min(``groups``, C). The paper fixes G=32 for ResNets whose
widths 32 divides; narrower layers (C < 32, e.g. CIFAR's 16-wide stems) get one channel per group
(instance-norm-like) rather than an error. A width with C ≥ G that G does not divide is rejected:
the stage ``check`` names it at spec validation, and the factory raises for any other width (a stem
or a previous stage's width read by a ``pre``/``white_conv`` norm).
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.layers import GroupNorm

from ..registry import OptionSpec, register_norm


def effective_groups(channels: int, groups: int, name: str = "gn") -> int:
    """G = min(groups, C); raise ``ValueError`` when C is not a multiple of G."""
    g = min(groups, channels)
    if channels % g:
        raise ValueError(f"{name}: width {channels} not divisible by groups {g}")
    return g


def group_check(name: str, default: int):
    """A stage ``check``: the reason the stage's width does not fit its group count, or None."""

    def check(stage: Any) -> str | None:
        groups = dict(stage.norm_args).get("groups", default)
        try:
            effective_groups(stage.width, groups, name)
        except ValueError as exc:
            return str(exc)
        return None

    return check


def group_options(*, momentum: str | None = None) -> dict[str, OptionSpec]:
    """The options of a group-wise norm: groups, eps, and (when ``momentum`` describes it) a running-stat momentum."""
    options = {"groups": OptionSpec(int, 32, "number of groups G (min(G, C) is used)", lambda v: v >= 1, ">= 1"),
               "eps": OptionSpec(float, 1e-5, "variance epsilon", lambda v: v > 0, "> 0")}
    if momentum is not None:
        options["momentum"] = OptionSpec(float, 0.1, momentum, lambda v: 0 < v <= 1, "in (0, 1]")
    return options


def _gn(num_features: int, *, groups: int = 32, eps: float = 1e-5) -> nn.Module:
    """Group normalisation (Wu & He 2018), G = min(groups, C) groups; timm's GroupNorm."""
    return GroupNorm(num_features, num_groups=effective_groups(num_features, groups), eps=eps)


register_norm("gn", _gn, options=group_options(),
    check=group_check("gn", 32),
    doc="Group normalisation (Wu & He 2018): per-sample statistics over groups of C/G channels")
