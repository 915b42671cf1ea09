"""Ghost module and Ghost bottleneck (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020),
plus the plain ``conv`` block (conv-norm-act) GhostNet ends its body with.

Ghost module (Sec. 3.1, Eq. 3): a primary k×k conv to m = ⌈C/s⌉ intrinsic maps, then a cheap d×d
depthwise conv making (s-1)·m ghost maps from them; the two are concatenated and cut to C channels
(timm's ``GhostModule``, whose norm/activation we swap for the stage's).

Ghost bottleneck (Sec. 3.2, Fig. 3): Ghost(expand to ``mid``, act) → [depthwise k×k stride 2 + norm,
only when stride 2] → [SE] → Ghost(project to C, no act), plus the shortcut: identity, or, when the
shape changes, timm's depthwise k×k(stride)+norm → 1×1 conv+norm. GhostNet's SE (the ``se`` option,
Table 7's "SE" column) is timm's ``SqueezeExcite`` with a hard-sigmoid gate and a reduced width of
``make_divisible(mid·r, 4)`` — the exact module of timm's ``ghostnet_100``; the stage's ``attention``
field instead places any registered attention at that same point (on the ``mid`` channels).
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
from timm.layers import make_divisible
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models.ghostnet import GhostModule

from ..layers import Layers, conv2d, conv_unit
from ..registry import OptionSpec, register_block


class NasGhostModule(GhostModule):
    """Ghost module: 1×1 conv to ⌈C/s⌉, cheap d×d depthwise to the rest, concat, cut to C; Han et al. 2020.

    timm's ``GhostModule`` with its BatchNorm/activation replaced by the stage's norm and (when
    ``act``) activation; ``act=False`` is the linear projection module of the Ghost bottleneck.
    """

    def __init__(self, in_chs: int, out_chs: int, *, layers: Layers, ratio: int = 2, dw_size: int = 3,
                 act: bool = True) -> None:
        super().__init__(in_chs, out_chs, kernel_size=1, ratio=ratio, dw_size=dw_size, act_layer=nn.Identity)
        self.init_chs = self.primary_conv[0].out_channels
        new_chs = self.cheap_operation[0].out_channels
        self.primary_conv[1] = layers.norm(self.init_chs)
        self.primary_conv[2] = layers.act() if act else nn.Identity()
        self.cheap_operation[1] = layers.norm(new_chs)
        self.cheap_operation[2] = layers.act() if act else nn.Identity()


def ghost_mid_chs(in_chs: int, *, mid: int, expansion: float) -> int:
    """The bottleneck's expanded width: ``mid`` when given (GhostNet's "#exp"), else make_divisible(in·e, 4)."""
    return mid if mid > 0 else make_divisible(in_chs * expansion, 4)


class GhostBottleneck(nn.Module):
    """Ghost(expand) → [dw k×k/2 + norm] → [SE] → Ghost(project) + shortcut; Han et al. 2020, Fig. 3."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, mid: int = 0,
                 expansion: float = 3.0, kernel: int = 3, ratio: int = 2, dw_size: int = 3,
                 se: float = 0.0) -> None:
        super().__init__()
        mid_chs = ghost_mid_chs(in_chs, mid=mid, expansion=expansion)
        self.mid_chs = mid_chs
        self.ghost1 = NasGhostModule(in_chs, mid_chs, layers=layers, ratio=ratio, dw_size=dw_size, act=True)
        if stride > 1:
            self.conv_dw = conv2d(mid_chs, mid_chs, kernel, stride, groups=mid_chs)
            self.bn_dw = layers.norm(mid_chs)
        else:
            self.conv_dw, self.bn_dw = None, None
        if se > 0:
            self.se = SqueezeExcite(mid_chs, rd_ratio=se, gate_layer="hard_sigmoid",
                                    rd_round_fn=functools.partial(make_divisible, divisor=4))
        else:
            self.se = layers.attn(mid_chs)
        self.ghost2 = NasGhostModule(mid_chs, out_chs, layers=layers, ratio=ratio, dw_size=dw_size, act=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(conv2d(in_chs, in_chs, kernel, stride, groups=in_chs), layers.norm(in_chs),
                                          conv2d(in_chs, out_chs, 1), layers.norm(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.bn_dw(self.conv_dw(y))
        y = self.ghost2(self.se(y))
        return y + self.shortcut(x)


def ghost_norm_widths(stage, in_chs: int) -> set[int]:
    """Widths a ghost stage normalises besides its own (registry meta ``norm_widths``, may over-approximate):
    the input (shortcut), the expanded widths and each Ghost module's intrinsic and ghost maps."""
    kw = stage.block_kw
    ratio = kw.get("ratio", 2)
    mids = {ghost_mid_chs(c, mid=kw.get("mid", 0), expansion=kw.get("expansion", 3.0)) for c in (in_chs, stage.width)}
    widths = {in_chs, *mids}
    for out in (*mids, stage.width):
        init = -(-out // ratio)
        widths |= {init, init * (ratio - 1)}
    return widths


def _check_ghost(stage) -> str | None:
    kw = stage.block_kw
    if kw.get("se", 0.0) > 0 and stage.attention != "none":
        return (f"block_args.se: GhostNet's SE and the stage attention {stage.attention!r} both sit on the "
                f"expanded features; set se: 0 or attention: none")
    return None


_odd = (lambda v: v >= 1 and v % 2 == 1, "an odd integer >= 1")

register_block(
    "ghost", GhostBottleneck, orders=("post",), check=_check_ghost, norm_widths=ghost_norm_widths,
    options={
        "mid": OptionSpec(int, 0, "expanded width (GhostNet's '#exp'); 0 = make_divisible(in·expansion, 4)",
                          lambda v: v >= 0, ">= 0"),
        "expansion": OptionSpec(float, 3.0, "expanded width / input width, used when mid is 0",
                                lambda v: v > 0, "> 0"),
        "kernel": OptionSpec(int, 3, "depthwise kernel of the stride-2 conv and of the shortcut", *_odd),
        "ratio": OptionSpec(int, 2, "Ghost ratio s: ⌈C/s⌉ intrinsic maps", lambda v: v >= 2, "an integer >= 2"),
        "dw_size": OptionSpec(int, 3, "kernel d of the cheap depthwise operation", *_odd),
        "se": OptionSpec(float, 0.0, "GhostNet SE reduction ratio on the expanded features; 0 = none",
                         lambda v: 0 <= v <= 1, "in [0, 1]"),
    },
    example={"block_args": {"se": 0.25, "kernel": 5}},
    doc="Ghost bottleneck (GhostNet, Han et al. 2020): Ghost expand → [dw/2] → [SE] → Ghost project + shortcut",
)


class ConvBlock(nn.Sequential):
    """``depth`` plain k×k conv-norm-act units (first strided), then the stage attention.

    GhostNet's last body layer (1×1 conv 160→960, BN, ReLU) is one such stage with ``kernel: 1``;
    in ``pre``/``white_conv`` order the units are norm-act-conv / norm-conv-act.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, kernel: int = 3) -> None:
        super().__init__(*conv_unit(in_chs, out_chs, kernel, stride, layers), layers.attn(out_chs))


register_block(
    "conv", ConvBlock, orders=("post", "pre", "white_conv"),
    options={"kernel": OptionSpec(int, 3, "kernel size", *_odd)},
    example={"block_args": {"kernel": 1}},
    doc="Plain conv-norm-act unit (GhostNet/MobileNet final 1×1 conv)",
)
