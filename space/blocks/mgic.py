"""MGIC block: a multigrid V-cycle over the channel dimension (Eliasof, Ephrath, Ruthotto & Treister,
"MGIC: Multigrid-in-Channels Neural Network Architectures", SIAM J. Sci. Comput. 45(3), 2023;
arXiv 2011.09128).

Reading: the abstract (a hierarchy of nested grouped convolutions of small group size, linear
growth in width, full channel coupling) made concrete from the authors' code (BGUCompSci/
MultigridInChannelsCNNs, ``resnetMG.py``: serial mode, grouped 1×1 transfer operators,
non-bottleneck steps); the paper's own pseudo-code was not available to check against. The
channels of a block form the finest "grid"; grouped convolutions of a fixed group size g only
couple channels inside a group, and the coarser grids couple the groups. With c_0 = C and
c_{l+1} = c_l / 2:

    cycle(x_l):                                    # x_l has c_l channels
      if c_l <= coarsest_width:                    # coarsest grid: fully coupled
          return S_dense(x_l)                      # residual step with dense 3×3 convs
      x_{l+1} = R_l x_l                            # restriction, grouped 1×1, c_l → c_l/2
      y_{l+1} = cycle(x_{l+1})
      z_l = x_l + N(P_l (y_{l+1} - x_{l+1}))       # coarse-grid correction, P_l grouped 1×1
      return S_l(z_l)                              # smoothing: residual step, grouped 3×3 convs

S(z) = act(z + N(conv(act(N(conv(z)))))) is a ResNet basic step (post order); for ``pre`` it is
z + conv(act(N(conv(act(N(z)))))) and the correction drops its N. Every grouped conv at level l
has c_l / g groups of g channels (one group when c_l < g), R and P map a group of g fine channels
to g/2 coarse ones and back, so a coarse group spans two fine groups: the hierarchy is nested and
the block couples all channels, while its parameters grow linearly in C for fixed g
(Σ_l c_l·g·(2·9 + 1) ≈ 38·C·g plus a constant coarsest level) instead of quadratically.
When the stride or width changes, a grouped 3×3 "connector" conv (groups = gcd(C_in, C_out);
the code's depthwise choice when C_out is a multiple of C_in) + norm + act runs first. The stage's
attention gates the residual branch of the finest smoothing step. The official code initialises
R and P to group averages; here they get the builder's He init like every other conv.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..layers import Layers, conv2d, conv_unit
from ..registry import OptionSpec, register_block


def level_widths(width: int, coarsest_width: int) -> list[int]:
    """Channel widths of the grids, finest first: halve while the width exceeds ``coarsest_width``."""
    widths = [width]
    while widths[-1] > coarsest_width:
        widths.append(widths[-1] // 2)
    return widths


def _groups(channels: int, group_size: int) -> int:
    return max(1, channels // group_size)


class ResidualStep(nn.Module):
    """ResNet basic step at fixed width: two 3×3 convs (``groups`` groups) and an identity skip."""

    def __init__(self, channels: int, groups: int, layers: Layers, attn: nn.Module | None = None) -> None:
        super().__init__()
        self.pre = layers.order == "pre"
        self.body = nn.Sequential(conv_unit(channels, channels, 3, 1, layers, groups=groups),
                                  conv_unit(channels, channels, 3, 1, layers, groups=groups, act=False))
        self.attn = attn if attn is not None else nn.Identity()
        self.act = nn.Identity() if self.pre else layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.attn(self.body(x)))


class MGICLevel(nn.Module):
    """One grid of the V-cycle: restriction, the coarser cycle, prolongated correction, smoothing."""

    def __init__(self, widths: list[int], group_size: int, layers: Layers, attn: nn.Module | None = None) -> None:
        super().__init__()
        fine, coarse = widths[0], widths[1]
        groups = _groups(fine, group_size)
        self.restrict = conv2d(fine, coarse, 1, groups=groups)
        self.coarse = MGICLevel(widths[1:], group_size, layers) if len(widths) > 2 else \
            ResidualStep(coarse, 1, layers)
        self.prolong = layers.conv(coarse, fine, 1, groups=groups)
        self.prolong_norm = nn.Identity() if layers.order == "pre" else layers.norm(fine, after=self.prolong)
        self.smooth = ResidualStep(fine, groups, layers, attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xc = self.restrict(x)
        z = x + self.prolong_norm(self.prolong(self.coarse(xc) - xc))
        return self.smooth(z)


class MGICBlock(nn.Module):
    """MGIC block (Eliasof et al. 2023): [grouped 3×3 connector] → channel V-cycle of grouped convs."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, group_size: int = 16,
                 coarsest_width: int = 8) -> None:
        super().__init__()
        if stride != 1 or in_chs != out_chs:
            self.connector = conv_unit(in_chs, out_chs, 3, stride, layers, groups=math.gcd(in_chs, out_chs))
        else:
            self.connector = nn.Identity()
        widths = level_widths(out_chs, coarsest_width)
        attn = layers.attn(out_chs)
        self.cycle = MGICLevel(widths, group_size, layers, attn) if len(widths) > 1 else \
            ResidualStep(out_chs, 1, layers, attn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cycle(self.connector(x))


def _check_mgic(stage) -> str | None:
    kw = stage.block_kw
    g, coarsest = kw.get("group_size", 16), kw.get("coarsest_width", 8)
    for c in level_widths(stage.width, coarsest)[:-1]:
        if c % 2:
            return (f"width {stage.width} halves to the odd width {c} before reaching "
                    f"block_args.coarsest_width={coarsest}; use a width of the form coarsest·2^k")
        if c >= g and c % g:
            return (f"grid width {c} (from width {stage.width}) is not a multiple of block_args.group_size={g}; "
                    f"use a width whose halvings down to {coarsest} stay multiples of {g}")
    return None


register_block(
    "mgic", MGICBlock, orders=("post", "pre"), check=_check_mgic,
    norm_widths=lambda st, in_chs: set(level_widths(st.width, st.block_kw.get("coarsest_width", 8))),
    options={
        "group_size": OptionSpec(int, 16, "g, channels per group of every grouped conv",
                                 lambda v: v >= 2 and v % 2 == 0, "an even integer >= 2"),
        "coarsest_width": OptionSpec(int, 8, "halve the channels while wider than this; dense convs there",
                                     lambda v: v >= 1, ">= 1"),
    },
    example={"block_args": {"group_size": 8, "coarsest_width": 4}},
    doc="MGIC block: channel V-cycle (grouped 1×1 restriction/prolongation, grouped 3×3 smoothing, dense "
        "coarsest level); Eliasof et al. 2023",
)
