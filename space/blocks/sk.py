"""Selective Kernel units and blocks (Li, Wang, Hu & Yang, "Selective Kernel Networks", CVPR 2019).

SK convolution (Sec. 3.1), with M branches:

- **Split** (eq. 1): branch m is a grouped 3×3 conv with dilation m+1 (the paper replaces the 5×5
  kernel by a dilated 3×3), then norm and activation; the stride sits in every branch.
- **Fuse** (eqs. 2–4): U = Σ_m U_m; s = global average pool of U; z = δ(B(W s)) with
  W ∈ R^{d×C} and d = max(C/r, L) (r = 16, L = 32 in the paper).
- **Select** (eqs. 5–6): per-branch fc A_m ∈ R^{C×d} (no bias); a_m = softmax over the M branches,
  channel-wise; V = Σ_m a_m · U_m.

:class:`SKConv` subclasses ``timm.layers.SelectiveKernel`` and keeps its forward (stack the
branches, ``SelectiveKernelAttn`` = sum → GAP → 1×1 conv → BN → act → 1×1 conv → softmax over the
branch axis, weighted sum); it passes ``rd_channels=d`` so that d follows the paper's rule exactly
(timm's default rounds C/r to a multiple of 8), uses ``split_input=False`` (the paper feeds the
whole input to every branch; timm's split is its own modification) and rebuilds the branches with
the stage's norm and activation. B in eq. (4) stays a BatchNorm: it normalises a 1×1 map, where
instance/layer/group statistics would be degenerate.

Registered blocks:

- ``sk`` — the SKNet bottleneck (Table 1): 1×1 conv → SK conv (stride here) → 1×1 conv, projection
  shortcut (1×1 conv + norm) when the shape changes, add, act. The middle width is
  ``bottleneck_ratio`` × out (½: SKNet-50 / ResNeXt-50 32×4d widths 128→256, ...).
- ``sk_basic`` — an SK basic block for small networks: SK conv (stride) → 3×3 conv + norm, shortcut,
  add, act; the SK conv replaces the first 3×3 as in timm's ``skresnet18`` (not a block of the paper).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import SelectiveKernel

from ..layers import Layers, conv_unit
from ..registry import OptionSpec, register_block


def attention_width(channels: int, reduction: int, min_dim: int) -> int:
    """d = max(C/r, L) (Li et al. 2019, eq. 4), with C/r rounded down."""
    return max(channels // reduction, min_dim)


class SKConv(SelectiveKernel):
    """SK convolution: M dilated 3×3 branches fused by a channel-wise softmax over branches (eqs. 1–6).

    ``branch_weights(x)`` returns the selection weights a (B, M, C); they sum to 1 over M.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, branches: int = 2,
                 groups: int = 1, reduction: int = 16, min_dim: int = 32) -> None:
        kernels = [3 + 2 * m for m in range(branches)]  # 3, 5, 7, ... realised as 3×3 with dilation 1, 2, 3
        super().__init__(in_chs, out_chs, kernel_size=kernels, stride=stride, groups=groups,
                         rd_channels=attention_width(out_chs, reduction, min_dim), keep_3x3=True,
                         split_input=False)
        post = layers.with_order("post")  # Split: conv → norm → act in every branch (eq. 1)
        self.paths = nn.ModuleList(
            conv_unit(in_chs, out_chs, 3, stride, post, groups=groups, dilation=m + 1) for m in range(branches))
        self.attn.act = layers.act()  # δ of eq. (4) is the stage's activation (ReLU in the paper)

    def branch_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Selection weights a_m (eq. 5) for input ``x``: shape (B, M, C), softmax over M."""
        u = torch.stack([path(x) for path in self.paths], dim=1)
        return self.attn(u).flatten(2)


def _shortcut(in_chs: int, out_chs: int, stride: int, layers: Layers) -> nn.Module:
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    proj = layers.conv(in_chs, out_chs, 1, stride)
    return nn.Sequential(proj, layers.norm(out_chs, after=proj))


def mid_width(width: int, ratio: float) -> int:
    """Bottleneck width of an ``sk`` block: round(width × ratio), at least 1."""
    return max(1, round(width * ratio))


class SKBottleneck(nn.Module):
    """SKNet bottleneck (Li et al. 2019, Table 1): 1×1 → SK[M, G, r] (stride) → 1×1, + shortcut, act."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, branches: int = 2,
                 groups: int = 32, reduction: int = 16, min_dim: int = 32, bottleneck_ratio: float = 0.5) -> None:
        super().__init__()
        mid = mid_width(out_chs, bottleneck_ratio)
        self.conv1 = conv_unit(in_chs, mid, 1, 1, layers)
        self.conv2 = SKConv(mid, mid, stride, layers=layers, branches=branches, groups=groups,
                            reduction=reduction, min_dim=min_dim)
        self.conv3 = conv_unit(mid, out_chs, 1, 1, layers, act=False)
        self.attn = layers.attn(out_chs)
        self.shortcut = _shortcut(in_chs, out_chs, stride, layers)
        self.act = layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.conv2(self.conv1(x)))
        return self.act(self.attn(y) + self.shortcut(x))


class SKBasic(nn.Module):
    """SK basic block: SK conv (stride) → 3×3 conv + norm, + shortcut, act (timm ``skresnet18`` layout)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, branches: int = 2,
                 groups: int = 1, reduction: int = 16, min_dim: int = 32) -> None:
        super().__init__()
        self.conv1 = SKConv(in_chs, out_chs, stride, layers=layers, branches=branches, groups=groups,
                            reduction=reduction, min_dim=min_dim)
        self.conv2 = conv_unit(out_chs, out_chs, 3, 1, layers, act=False)
        self.attn = layers.attn(out_chs)
        self.shortcut = _shortcut(in_chs, out_chs, stride, layers)
        self.act = layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.attn(self.conv2(self.conv1(x))) + self.shortcut(x))


def _positive(doc: str, default: int) -> OptionSpec:
    return OptionSpec(int, default, doc, lambda v: v >= 1, ">= 1")


def _sk_options(groups: int) -> dict[str, OptionSpec]:
    return {
        "branches": OptionSpec(int, 2, "M, number of branches (3×3 with dilation 1..M)",
                               lambda v: 2 <= v <= 4, "in 2..4"),
        "groups": _positive("G, groups of every branch conv", groups),
        "reduction": _positive("r, reduction ratio of the fuse fc (d = max(C/r, L))", 16),
        "min_dim": _positive("L, minimum width d of the fuse fc", 32),
    }


def _groups_problem(channels: int, groups: int, what: str) -> str | None:
    if groups > channels or channels % groups:
        return (f"block_args.groups={groups} must divide the {what} width {channels} "
                f"(choose a divisor of {channels})")
    return None


def _check_sk(stage) -> str | None:
    kw = stage.block_kw
    mid = mid_width(stage.width, kw.get("bottleneck_ratio", 0.5))
    return _groups_problem(mid, kw.get("groups", 32), "bottleneck (width × bottleneck_ratio)")


def _check_sk_basic(stage) -> str | None:
    return _groups_problem(stage.width, stage.block_kw.get("groups", 1), "stage")


register_block(
    "sk", SKBottleneck, orders=("post",), check=_check_sk,
    norm_widths=lambda st, in_chs: {mid_width(st.width, st.block_kw.get("bottleneck_ratio", 0.5))},
    options={**_sk_options(32),
             "bottleneck_ratio": OptionSpec(float, 0.5, "middle width / out width (0.5 in SKNet-50)",
                                            lambda v: 0.0 < v <= 4.0, "in (0, 4]")},
    example={"block_args": {"groups": 4, "min_dim": 8}},
    doc="SKNet bottleneck: 1×1 → SK conv (M dilated 3×3 branches, softmax selection) → 1×1; Li et al. 2019",
)
register_block(
    "sk_basic", SKBasic, orders=("post",), check=_check_sk_basic,
    options=_sk_options(1),
    example={"block_args": {"min_dim": 8}},
    doc="SK basic block: SK conv → 3×3 conv, residual; SK unit of Li et al. 2019 in a ResNet basic block",
)
