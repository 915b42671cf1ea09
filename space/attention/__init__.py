"""Attention choices: shape-preserving modules applied to a block's residual branch."""
from __future__ import annotations

import torch.nn as nn
from timm.layers import SEModule

from ..registry import OptionSpec, register_attention


def _none(channels: int) -> nn.Module:
    """No attention (identity)."""
    return nn.Identity()


def _se(channels: int, *, rd_ratio: float = 0.25) -> nn.Module:
    """Squeeze-excitation (Hu et al. 2018): pool → fc C·r → ReLU → fc C → sigmoid gate; timm's SEModule."""
    return SEModule(channels, rd_ratio=rd_ratio)


register_attention("none", _none)
register_attention("se", _se, options={
    "rd_ratio": OptionSpec(float, 0.25, "reduction ratio", lambda v: 0 < v <= 1, "in (0, 1]")})

from .._autoload import import_submodules  # noqa: E402

import_submodules(__name__, __path__)
