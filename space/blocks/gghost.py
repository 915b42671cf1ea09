"""G-Ghost stage (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022, Sec. 4).

A whole-stage builder: of a stage of n blocks, only a fraction of the output channels is computed
by the deep block path; the rest ("ghost" features) come from the first block's output through a
cheap operation, enriched by a "mix" of the deep path's intermediate features (paper Fig. 6(c)).

Our reading of the paper, checked against the official PyTorch code (huawei-noah/
Efficient-AI-Backbones, ``g_ghost_pytorch/g_ghost_regnet.py``, class ``Stage``; read, not copied):

1. ``first``: a full-width block (in → C, stride s, projection shortcut) gives X0.
2. Split X0 into raw = X0[:, :C_raw] and cheap = X0[:, C_raw:]. C_raw = ⌊C·(1-r)/q⌋·q with the
   cheap ratio r (0.5) and, for grouped bottlenecks, q = ⌊0.75·g⌋ the raw path's group width
   (the official code shrinks the raw blocks' group width by 0.75, option ``raw_group_scale``);
   q = 1 without groups. C_cheap = C - C_raw. (For ``bottle_ratio`` != 1, which the official code
   does not have, C_raw is the largest width <= C·(1-r) whose bottleneck splits into groups of q.)
3. The raw part goes through n-2 inner blocks of width C_raw (identity shortcuts), giving
   E1 … E_{n-2}.
4. Cheap features: Y = norm(conv1×1(cheap)) (the paper's cheap linear operation).
5. Mix (the paper's "mix" operation): global-average-pool X0, E1 … E_{n-2}, concatenate
   (C + (n-2)·C_raw values), then fc → BN → act → fc → BN to C_cheap values (the fcs are 1×1
   convs on the pooled vector), broadcast-added to Y: Ghost = act(Y + mix).
6. ``last``: a full-width block on concat(E_{n-2}, Ghost) gives the stage output (C channels).

So a stage of depth n still has n blocks (first, n-2 narrow ones, last), and needs n >= 3 (the
official network keeps plain stages where a RegNet stage has 2 blocks or fewer). The inner block is
an option (``bottleneck`` — RegNet's X block with ``bottle_ratio`` 1 and ``group_width`` g — or
``basic``). The mix's normalisers are BatchNorm regardless of the stage's ``norm``: they act on
pooled 1×1 vectors (as SE's fcs do), which spatial normalisers are not meant for.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..layers import Layers, conv2d
from ..registry import BLOCKS, OptionSpec, register_block
from .bottleneck import bottleneck_problem, bottleneck_width

INNER_BLOCKS = ("bottleneck", "basic")
_BOTTLENECK_ONLY = {"bottle_ratio": 0.25, "group_width": 0, "raw_group_scale": 0.75}


def gghost_split(width: int, *, cheap_ratio: float, bottle_ratio: float = 1.0, group_width: int = 0,
                 raw_group_scale: float = 0.75) -> tuple[int, int, int]:
    """``(raw_chs, cheap_chs, raw_group_width)`` of a G-Ghost stage of ``width`` channels (step 2 above).

    ``group_width == 0`` (dense or basic inner blocks): raw = ⌊width·(1-r)⌋. Otherwise the raw path's
    group width is g' = ⌊group_width·raw_group_scale⌋ and raw is the largest width <= width·(1-r) whose
    bottleneck (``round(raw·bottle_ratio)``) splits into groups of g' — for ``bottle_ratio`` 1 the
    official ⌊width·(1-r)/g'⌋·g' (a bounded search: at most ``width`` steps).
    """
    raw_gw = int(group_width * raw_group_scale) if group_width else 0
    raw = int(width * (1 - cheap_ratio) + 1e-9)
    while raw_gw and raw > 0 and bottleneck_problem(raw, bottle_ratio, raw_gw):
        raw -= 1
    return raw, width - raw, raw_gw


@dataclass(frozen=True)
class _Plan:
    inner: str
    raw: int
    cheap: int
    full_kw: dict
    raw_kw: dict


def _plan(stage) -> _Plan:
    """Channel split and inner-block options of a G-Ghost stage, from its spec."""
    opts = stage.block_kw
    inner = opts.get("inner", "bottleneck")
    gw = opts.get("group_width", 0) if inner == "bottleneck" else 0
    b = opts.get("bottle_ratio", 0.25)
    raw, cheap, raw_gw = gghost_split(stage.width, cheap_ratio=opts.get("cheap_ratio", 0.5), bottle_ratio=b,
                                      group_width=gw, raw_group_scale=opts.get("raw_group_scale", 0.75))
    if inner != "bottleneck":
        return _Plan(inner, raw, cheap, {}, {})
    return _Plan(inner, raw, cheap, {"bottle_ratio": b, "group_width": gw}, {"bottle_ratio": b, "group_width": raw_gw})


class GGhostStage(nn.Module):
    """first block → split → (n-2) narrow blocks ∥ cheap 1×1 + mix → concat → last block; Han et al. 2022."""

    def __init__(self, stage, in_chs: int, layers: Layers) -> None:
        super().__init__()
        problem = _check(stage)
        if problem:
            raise ValueError(problem)
        plan = _plan(stage)
        width, depth, raw, cheap = stage.width, stage.depth, plan.raw, plan.cheap
        self.raw_chs, self.cheap_chs = raw, cheap
        make = BLOCKS.get(plan.inner)
        self.first = make(in_chs, width, stage.stride, layers=layers, **plan.full_kw)
        self.raw_blocks = nn.Sequential(*[make(raw, raw, 1, layers=layers, **plan.raw_kw) for _ in range(depth - 2)])
        self.cheap = nn.Sequential(conv2d(cheap, cheap, 1), layers.norm(cheap))
        self.mix = nn.Sequential(conv2d(width + raw * (depth - 2), cheap, 1), nn.BatchNorm2d(cheap), layers.act(),
                                 conv2d(cheap, cheap, 1), nn.BatchNorm2d(cheap))
        self.cheap_act = layers.act()
        self.last = make(width, width, 1, layers=layers, **plan.full_kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.first(x)
        pooled = [x0.mean((2, 3), keepdim=True)]
        e = x0[:, :self.raw_chs]
        for block in self.raw_blocks:
            e = block(e)
            pooled.append(e.mean((2, 3), keepdim=True))
        ghost = self.cheap_act(self.cheap(x0[:, self.raw_chs:]) + self.mix(torch.cat(pooled, 1)))
        return self.last(torch.cat([e, ghost], 1))


def _norm_widths(stage, in_chs: int) -> set[int]:
    """Widths the stage norm sees besides the stage width (registry meta ``norm_widths``): raw, cheap, bottlenecks."""
    plan = _plan(stage)
    if not plan.full_kw:  # basic inner blocks
        return {plan.raw, plan.cheap}
    return {plan.raw, plan.cheap, *(bottleneck_width(w, plan.full_kw["bottle_ratio"]) for w in (stage.width, plan.raw))}


def _check(stage) -> str | None:
    opts = stage.block_kw
    plan = _plan(stage)
    if stage.depth < 3:
        return (f"depth: a G-Ghost stage needs depth >= 3 (first block, >= 1 narrow block, last block), "
                f"got {stage.depth}; use block {plan.inner!r} for shallower stages")
    if plan.inner != "bottleneck":
        extra = sorted(k for k in _BOTTLENECK_ONLY if k in opts and opts[k] != _BOTTLENECK_ONLY[k])
        if extra:
            return f"block_args.{extra[0]}: applies to inner 'bottleneck' only, inner is {plan.inner!r}"
    if plan.raw < 1 or plan.cheap < 1:
        return (f"block_args.cheap_ratio: width {stage.width} splits into {plan.raw} raw and {plan.cheap} cheap "
                f"channels (raw rounded down to fit the raw path's group width); both must be >= 1")
    if plan.inner == "bottleneck":
        if plan.full_kw["group_width"] and plan.raw_kw["group_width"] < 1:
            return (f"block_args.raw_group_scale: group_width {plan.full_kw['group_width']} × "
                    f"{opts.get('raw_group_scale', 0.75)} leaves a raw-path group width below 1")
        problem = bottleneck_problem(stage.width, **plan.full_kw) or bottleneck_problem(plan.raw, **plan.raw_kw)
        if problem:
            return f"{problem} (G-Ghost raw path: {plan.raw} channels, group width {plan.raw_kw['group_width']})"
    return None


register_block(
    "g_ghost", GGhostStage, kind="stage", orders=("post",), check=_check, norm_widths=_norm_widths,
    options={
        "inner": OptionSpec(str, "bottleneck", "block type of the stage", lambda v: v in INNER_BLOCKS,
                            " or ".join(INNER_BLOCKS)),
        "cheap_ratio": OptionSpec(float, 0.5, "fraction of the width made by cheap operations",
                                  lambda v: 0 < v < 1, "in (0, 1)"),
        "bottle_ratio": OptionSpec(float, 0.25, "inner bottleneck's width ratio (RegNetX: 1.0)",
                                   lambda v: 0 < v <= 4, "in (0, 4]"),
        "group_width": OptionSpec(int, 0, "inner bottleneck's group width; 0 = dense", lambda v: v >= 0, ">= 0"),
        "raw_group_scale": OptionSpec(float, 0.75, "raw path group width = int(group_width × this) (official code)",
                                      lambda v: 0 < v <= 1, "in (0, 1]"),
    },
    example={"depth": 3, "block_args": {"bottle_ratio": 1.0, "group_width": 8}},
    doc="G-Ghost stage (Han et al. IJCV 2022): narrow deep path + cheap 1×1 features mixed with its pooled features",
)
