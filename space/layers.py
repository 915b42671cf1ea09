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

    def norm(self, channels: int, *, after: nn.Module | None = None, **overrides: Any) -> nn.Module:
        """The stage's norm over ``channels``; ``after`` is the conv it follows (made by :meth:`conv`), which a
        norm registered with a ``conv`` factory (ConvNorm) requires and every other norm ignores."""
        entry = NORMS.entry(self.norm_name)
        kw = {**dict(self.norm_args), **overrides}
        if entry.meta.get("conv") is None:
            return entry.obj(channels, **kw)
        conv_keys = entry.meta.get("conv_options", ())
        return entry.obj(channels, after=after, **{k: v for k, v in kw.items() if k not in conv_keys})

    def conv(self, in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1, *, groups: int = 1,
             dilation: int = 1) -> nn.Conv2d:
        """A 'same'-padded conv that the stage's norm follows: in ``post`` order the norm's own conv where its
        registration gives one (ConvNorm's preconditioned conv), else :func:`conv2d`."""
        entry = NORMS.entry(self.norm_name)
        make = entry.meta.get("conv")
        if make is None or self.order != "post":
            return conv2d(in_chs, out_chs, kernel, stride, groups=groups, dilation=dilation)
        args = dict(self.norm_args)
        conv_kw = {k: args[k] for k in entry.meta.get("conv_options", ()) if k in args}
        return make(in_chs, out_chs, kernel, stride, groups=groups, dilation=dilation, **conv_kw)

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
    conv = layers.conv(in_chs, out_chs, kernel, stride, groups=groups, dilation=dilation)
    if layers.order == "post":
        mods = [conv, layers.norm(out_chs, after=conv)] + ([layers.act()] if act else [])
    elif layers.order == "pre":
        mods = [layers.norm(in_chs)] + ([layers.act()] if act else []) + [conv]
    elif layers.order == "white_conv":
        mods = [layers.norm(in_chs), conv] + ([layers.act()] if act else [])
    else:
        raise ValueError(f"order: must be post, pre or white_conv, got {layers.order!r}")
    return nn.Sequential(*mods)


def projection(in_chs: int, out_chs: int, stride: int, layers: Layers) -> nn.Sequential:
    """1×1 conv (stride) + the stage's norm: the post-order projection shortcut of a residual block."""
    proj = layers.conv(in_chs, out_chs, 1, stride)
    return nn.Sequential(proj, layers.norm(out_chs, after=proj))
