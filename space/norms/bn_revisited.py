"""Batch norm with the revisited initialisation (Davis & Frank, "Revisiting Batch Norm
Initialization", ECCV 2022).

Two changes to standard BN, both from the paper and its official code: the scale γ starts at a
small constant (0.1 instead of 1; option ``gamma_init``), and the optimiser updates γ with the
learning rate divided by c = 100 (``gamma_lr_scale`` = 1/c) and no weight decay. In the paper's
parameter grouping every other 1-D parameter (biases, BN shifts) also gets no weight decay at the
full learning rate, and conv/linear weights get the weight decay.

The module announces its γ rule through ``nas_param_groups()`` (the hook the training engine
reads); :func:`bn_revisited_param_groups` builds optimiser groups for a whole model.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..registry import OptionSpec, register_norm


class RevisitedBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` with γ initialised to ``gamma_init`` and its own optimiser-group rule."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, gamma_init: float = 0.1,
                 gamma_lr_scale: float = 0.01) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.gamma_init, self.gamma_lr_scale = gamma_init, gamma_lr_scale
        self.reset_nas_parameters()

    def reset_nas_parameters(self) -> None:
        """γ = ``gamma_init`` (0.1), β = 0 (called by the builder after its generic init)."""
        with torch.no_grad():
            self.weight.fill_(self.gamma_init)
            self.bias.zero_()

    def nas_param_groups(self) -> list[dict[str, Any]]:
        """γ at lr·``gamma_lr_scale`` (lr/100) without weight decay; β is left to the default rule."""
        return [{"params": [self.weight], "lr_scale": self.gamma_lr_scale, "weight_decay": 0.0}]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", gamma_init={self.gamma_init}, gamma_lr_scale={self.gamma_lr_scale}"


def bn_revisited_param_groups(model: nn.Module, *, lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Optimiser parameter groups for ``model`` following Davis & Frank's rule.

    Parameters claimed by a module's ``nas_param_groups()`` get ``lr · lr_scale`` and that group's
    weight decay (for BN-revisited γ: lr/100 and 0; claims with the same rule share one group);
    every other trainable parameter whose squeezed shape is at most 1-D (biases, norm shifts and
    scales) gets ``lr`` and no weight decay; the rest (conv and linear weights) ``lr`` and
    ``weight_decay``. Each trainable parameter appears in exactly one group; empty groups are left
    out. Each group carries ``lr_scale`` too (timm's schedulers multiply the scheduled lr by it).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), RevisitedBatchNorm2d(4))
    >>> groups = bn_revisited_param_groups(net, lr=0.1, weight_decay=5e-4)
    >>> [(len(g["params"]), g["lr"], g["weight_decay"]) for g in groups]
    [(1, 0.001, 0.0), (1, 0.1, 0.0), (1, 0.1, 0.0005)]
    """
    if lr <= 0 or weight_decay < 0:
        raise ValueError(f"lr must be > 0 and weight_decay >= 0, got lr={lr}, weight_decay={weight_decay}")
    claimed: set[int] = set()
    by_rule: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for module in model.modules():
        hook = getattr(module, "nas_param_groups", None)
        if not callable(hook):
            continue
        for spec in hook():
            params = [p for p in spec["params"] if p.requires_grad and id(p) not in claimed]
            claimed.update(id(p) for p in params)
            rule = (float(spec.get("lr_scale", 1.0)), float(spec.get("weight_decay", weight_decay)))
            by_rule.setdefault(rule, []).extend(params)
    groups: list[dict[str, Any]] = [{"params": params, "lr": lr * scale, "lr_scale": scale, "weight_decay": wd}
                                    for (scale, wd), params in by_rule.items()]
    no_decay, decay = [], []
    for p in model.parameters():
        if p.requires_grad and id(p) not in claimed:
            (no_decay if p.squeeze().dim() <= 1 else decay).append(p)
    groups.append({"params": no_decay, "lr": lr, "lr_scale": 1.0, "weight_decay": 0.0})
    groups.append({"params": decay, "lr": lr, "lr_scale": 1.0, "weight_decay": weight_decay})
    return [g for g in groups if g["params"]]


def _bn_revisited(num_features: int, *, momentum: float = 0.1, eps: float = 1e-5, gamma_init: float = 0.1,
                  gamma_lr_scale: float = 0.01) -> nn.Module:
    """BN with γ initialised to 0.1 and γ trained at lr/100 without weight decay (Davis & Frank 2022)."""
    return RevisitedBatchNorm2d(num_features, eps=eps, momentum=momentum, gamma_init=gamma_init,
                                gamma_lr_scale=gamma_lr_scale)


register_norm("bn_revisited", _bn_revisited, options={
    "momentum": OptionSpec(float, 0.1, "running-stat momentum", lambda v: 0 < v <= 1, "in (0, 1]"),
    "eps": OptionSpec(float, 1e-5, "variance epsilon", lambda v: v > 0, "> 0"),
    "gamma_init": OptionSpec(float, 0.1, "initial BN scale γ (paper: 0.1)", lambda v: v > 0, "> 0"),
    "gamma_lr_scale": OptionSpec(float, 0.01, "γ learning-rate multiplier 1/c (paper: c=100)",
                                 lambda v: 0 < v <= 1, "in (0, 1]")},
    doc="BN, γ initialised to 0.1 and trained at lr/100 without weight decay (Davis & Frank 2022)")
