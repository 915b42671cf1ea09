"""What a block receives to make its sub-layers: the stage's norm, activation, attention and order.

Blocks never read a global config (pycls's ``norm2d`` reading ``cfg.BN.EPS`` is the
counter-example): they call ``layers.norm(C)``, ``layers.act()``, ``layers.attn(C)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from .registry import ACTIVATIONS, ATTENTIONS, NORMS


@dataclass(frozen=True)
class Layers:
    """Layer factories for one stage (a frozen value; cheap to pass around)."""

    norm_name: str = "bn"
    act_name: str = "relu"
    attn_name: str = "none"
    order: str = "post"
    norm_args: tuple[tuple[str, Any], ...] = ()
    attn_args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_stage(cls, stage: Any) -> Layers:
        return cls(stage.norm, stage.act, stage.attention, stage.order, stage.norm_args, stage.attn_args)

    def norm(self, channels: int, **overrides: Any) -> nn.Module:
        return NORMS.get(self.norm_name)(channels, **{**dict(self.norm_args), **overrides})

    def act(self) -> nn.Module:
        return ACTIVATIONS.get(self.act_name)()

    def attn(self, channels: int) -> nn.Module:
        return ATTENTIONS.get(self.attn_name)(channels, **dict(self.attn_args))

    def with_order(self, order: str) -> Layers:
        return Layers(self.norm_name, self.act_name, self.attn_name, order, self.norm_args, self.attn_args)


def conv2d(in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
           dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    """A 'same'-padded k×k convolution."""
    pad = dilation * (kernel - 1) // 2
    return nn.Conv2d(in_chs, out_chs, kernel, stride, pad, dilation=dilation, groups=groups, bias=bias)


def conv_unit(in_chs: int, out_chs: int, kernel: int, stride: int, layers: Layers, *, groups: int = 1,
              dilation: int = 1, act: bool = True) -> nn.Sequential:
    """One conv with its norm and activation in the stage's unit order.

    post: conv→norm→act; pre: norm→act→conv (norm over the input); white_conv: norm→conv→act.
    ``act=False`` drops the activation (e.g. a linear projection).
    """
    conv = conv2d(in_chs, out_chs, kernel, stride, groups=groups, dilation=dilation)
    if layers.order == "post":
        mods = [conv, layers.norm(out_chs)] + ([layers.act()] if act else [])
    elif layers.order == "pre":
        mods = [layers.norm(in_chs)] + ([layers.act()] if act else []) + [conv]
    elif layers.order == "white_conv":
        mods = [layers.norm(in_chs), conv] + ([layers.act()] if act else [])
    else:
        raise ValueError(f"order: must be post, pre or white_conv, got {layers.order!r}")
    return nn.Sequential(*mods)
