"""Residual bottleneck block 1×1 → 3×3 (grouped, strided) → 1×1: ResNet, ResNeXt, RegNetX, WRN-bottleneck.

- ``post`` — He et al. 2016 (ResNet-50) / Xie et al. 2017 (ResNeXt, Fig. 3c) / Radosavovic et al.
  2020 (RegNet's X block): conv1×1-BN-ReLU → conv3×3(stride, groups)-BN-ReLU → conv1×1-BN, add,
  ReLU; 1×1 conv(stride)+BN projection when the shape changes. The stride sits on the 3×3 conv
  (ResNeXt, RegNet, torchvision's "ResNet v1.5").
- ``pre`` — the pre-activation bottleneck of He et al. 2016b that Wide-ResNet (Zagoruyko &
  Komodakis 2016, block type B(1,3,1)) widens: BN-ReLU-conv1×1 → BN-ReLU-conv3×3 → BN-ReLU-conv1×1,
  plus a 1×1 projection of the *pre-activated* input when the shape changes.
- ``white_conv`` — Cho et al.'s norm→conv→act unit with the normaliser right before each conv (as
  in ``basic``); the projection reads the normalised input.

Options: ``bottle_ratio`` b (bottleneck width ``mid = round(out·b)``; 0.25 is ResNet's 4× bottleneck,
1.0 RegNetX's) and ``group_width`` g (0: a dense 3×3; otherwise ``groups = mid // g``, ResNeXt's
cardinality; a g wider than ``mid`` is capped at ``mid`` as RegNet's width/group compatibility
does). ResNeXt-50 (32×4d) is ``bottle_ratio=0.5`` on widths 256..2048 with ``group_width`` 4, 8, 16, 32
(cardinality 32 throughout). Attention
(SE etc.) gates the residual branch before the addition.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import Layers, conv2d, projection
from ..registry import OptionSpec, register_block


def bottleneck_width(out_chs: int, bottle_ratio: float) -> int:
    """The 3×3 conv's width: ``round(out_chs · bottle_ratio)`` (pycls/timm RegNet convention)."""
    return int(round(out_chs * bottle_ratio))


def bottleneck_groups(mid: int, group_width: int) -> int:
    """Groups of the 3×3 conv: ``mid // min(group_width, mid)``, or 1 for ``group_width == 0``."""
    return mid // min(group_width, mid) if group_width else 1


def bottleneck_problem(width: int, bottle_ratio: float, group_width: int) -> str | None:
    """Why ``(width, bottle_ratio, group_width)`` cannot form a bottleneck block, or ``None``."""
    mid = bottleneck_width(width, bottle_ratio)
    if mid < 1:
        return f"block_args.bottle_ratio: {bottle_ratio} leaves no bottleneck channels at width {width}"
    if group_width and mid % min(group_width, mid):
        return (f"block_args.group_width: the bottleneck width {mid} (= round(width {width} × bottle_ratio "
                f"{bottle_ratio})) is not divisible by group_width {group_width}; use a divisor of {mid} or 0")
    return None


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride, groups) → 1×1 residual block; see the module docstring for the orders."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, bottle_ratio: float = 0.25,
                 group_width: int = 0) -> None:
        super().__init__()
        problem = bottleneck_problem(out_chs, bottle_ratio, group_width)
        if problem:
            raise ValueError(problem)
        mid = bottleneck_width(out_chs, bottle_ratio)
        self.order = layers.order
        self.mid_chs, self.groups = mid, bottleneck_groups(mid, group_width)
        needs_proj = stride != 1 or in_chs != out_chs
        self.conv1 = layers.conv(in_chs, mid, 1)
        self.conv2 = layers.conv(mid, mid, 3, stride, groups=self.groups)
        self.conv3 = layers.conv(mid, out_chs, 1)
        self.attn = layers.attn(out_chs)
        if self.order == "post":
            self.norm1, self.norm2 = layers.norm(mid, after=self.conv1), layers.norm(mid, after=self.conv2)
            self.norm3 = layers.norm(out_chs, after=self.conv3)
            self.shortcut = projection(in_chs, out_chs, stride, layers) if needs_proj else nn.Identity()
        else:  # pre / white_conv: each norm reads its conv's input
            self.norm1, self.norm2, self.norm3 = layers.norm(in_chs), layers.norm(mid), layers.norm(mid)
            self.shortcut = conv2d(in_chs, out_chs, 1, stride) if needs_proj else None
        self.act1, self.act2, self.act3 = layers.act(), layers.act(), layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "post":
            y = self.act1(self.norm1(self.conv1(x)))
            y = self.act2(self.norm2(self.conv2(y)))
            y = self.norm3(self.conv3(y))
            return self.act3(self.attn(y) + self.shortcut(x))
        if self.order == "pre":
            xa = self.act1(self.norm1(x))
            y = self.conv1(xa)
            y = self.conv2(self.act2(self.norm2(y)))
            y = self.conv3(self.act3(self.norm3(y)))
            return self.attn(y) + (x if self.shortcut is None else self.shortcut(xa))
        xw = self.norm1(x)  # white_conv
        y = self.act1(self.conv1(xw))
        y = self.act2(self.conv2(self.norm2(y)))
        y = self.conv3(self.norm3(y))
        return self.act3(self.attn(y) + (x if self.shortcut is None else self.shortcut(xw)))


def _check(stage) -> str | None:
    kw = stage.block_kw
    return bottleneck_problem(stage.width, kw.get("bottle_ratio", 0.25), kw.get("group_width", 0))


BOTTLENECK_OPTIONS = {
    "bottle_ratio": OptionSpec(float, 0.25, "bottleneck width / block width (ResNet 0.25, RegNetX 1.0)",
                               lambda v: 0 < v <= 4, "in (0, 4]"),
    "group_width": OptionSpec(int, 0, "channels per group of the 3×3 conv; 0 = dense (ResNeXt cardinality "
                                      "= mid // group_width)", lambda v: v >= 0, ">= 0"),
}

register_block(
    "bottleneck", Bottleneck, orders=("post", "pre", "white_conv"), options=BOTTLENECK_OPTIONS, check=_check,
    norm_widths=lambda st, in_chs: {bottleneck_width(st.width, st.block_kw.get("bottle_ratio", 0.25))},
    example={"block_args": {"bottle_ratio": 0.5, "group_width": 4}},
    doc="Residual bottleneck 1×1→3×3(grouped)→1×1: ResNet/ResNeXt/RegNetX (post), WRN bottleneck (pre)",
)
