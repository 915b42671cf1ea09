"""Basic-block stage with a per-block inner width: the architecture a channel-pruned network has.

``basic_slim`` builds ``depth`` residual basic blocks (:mod:`space.blocks.basic`, same forward in all
three unit orders) whose first 3×3 conv maps to ``mids[i]`` channels in block ``i`` instead of the
stage width; the residual stream keeps the stage width. ``proj: true`` gives the first block a
1×1 projection shortcut even when its shape is unchanged (a pruned stage whose width shrank to its
input width keeps the projection it was trained with). Written by ``nas prune`` (Taylor pruning,
Molchanov et al. 2019); ``mids: []`` means every inner width equals the stage width.

:class:`FactorisedConv` (k×k conv to ``r`` channels, then 1×1 conv to ``C_out``) and the ``ranks``
option live here too; ``basic_lowrank`` (:mod:`space.blocks.lowrank`) exposes them.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch.nn as nn

from ..layers import Layers, conv2d
from ..registry import OptionSpec, register_block
from .basic import BasicBlock

ORDERS = ("pre", "post", "white_conv")


class FactorisedConv(nn.Sequential):
    """Rank-``r`` k×k conv W = U·V: ``v`` (k×k, ``C_in``→``r``, stride, 'same' pad), then ``u`` (1×1, ``r``→``C_out``).

    The factorisation of Jaderberg et al. 2014 / Zhang et al. 2015 that LRPET (Guo et al. 2023)
    exports: ``r·(C_in·k² + C_out)`` weights instead of ``C_out·C_in·k²``.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, rank: int) -> None:
        super().__init__(OrderedDict([("v", conv2d(in_chs, rank, kernel, stride)),
                                      ("u", conv2d(rank, out_chs, 1, 1))]))
        self.in_channels, self.out_channels, self.rank = in_chs, out_chs, rank


def make_conv(in_chs: int, out_chs: int, kernel: int, stride: int, rank: int) -> nn.Module:
    """A dense 'same' conv (``rank == 0``) or its rank-``rank`` :class:`FactorisedConv`."""
    return conv2d(in_chs, out_chs, kernel, stride) if rank == 0 else FactorisedConv(in_chs, out_chs, kernel, stride,
                                                                                     rank)


class SlimBasicBlock(BasicBlock):
    """:class:`BasicBlock` with inner width ``mid``, an optional forced projection and optional low-rank convs.

    Sub-module names equal the basic block's, so a ``basic`` state dict with matching shapes loads.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, mid: int, dropout: float = 0.0,
                 proj: bool = False, ranks: tuple[int, int] = (0, 0)) -> None:
        nn.Module.__init__(self)  # BasicBlock.__init__ would build the full-width convs; forward is reused as is
        self.order = layers.order
        needs_proj = proj or stride != 1 or in_chs != out_chs
        self.conv1 = make_conv(in_chs, mid, 3, stride, ranks[0])
        self.conv2 = make_conv(mid, out_chs, 3, 1, ranks[1])
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.attn = layers.attn(out_chs)
        if self.order == "post":
            self.norm1, self.norm2 = layers.norm(mid), layers.norm(out_chs)
            self.shortcut = (nn.Sequential(conv2d(in_chs, out_chs, 1, stride), layers.norm(out_chs))
                             if needs_proj else nn.Identity())
        else:  # pre / white_conv: norms read the conv inputs
            self.norm1, self.norm2 = layers.norm(in_chs), layers.norm(mid)
            self.shortcut = conv2d(in_chs, out_chs, 1, stride) if needs_proj else None
        self.act1, self.act2 = layers.act(), layers.act()


def build_slim_stage(stage: Any, in_chs: int, layers: Layers) -> nn.Sequential:
    """``stage.depth`` :class:`SlimBasicBlock` s; block ``i``: inner width ``mids[i]``, conv ranks
    ``ranks[2i:2i+2]``."""
    kw = stage.block_kw
    mids = tuple(kw.get("mids", ())) or (stage.width,) * stage.depth
    ranks = tuple(kw.get("ranks", ())) or (0,) * (2 * stage.depth)
    blocks = []
    for i in range(stage.depth):
        blocks.append(SlimBasicBlock(in_chs if i == 0 else stage.width, stage.width, stage.stride if i == 0 else 1,
                                     layers=layers, mid=mids[i], dropout=kw.get("dropout", 0.0),
                                     proj=bool(kw.get("proj", False)) and i == 0,
                                     ranks=(ranks[2 * i], ranks[2 * i + 1])))
    return nn.Sequential(*blocks)


def _ints(value: Any, minimum: int) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)


def check_slim(stage: Any) -> str | None:
    """Reject ``mids``/``ranks`` lists whose length does not match the stage depth."""
    kw = stage.block_kw
    mids, ranks = kw.get("mids", ()), kw.get("ranks", ())
    if mids and len(mids) != stage.depth:
        return f"block_args.mids: needs one inner width per block ({stage.depth}), got {len(mids)}"
    if ranks and len(ranks) != 2 * stage.depth:
        return f"block_args.ranks: needs two ranks per block (conv1, conv2; {2 * stage.depth}), got {len(ranks)}"
    return None


SLIM_OPTIONS = {
    "mids": OptionSpec(tuple, (), "inner width of each block (conv1 output); [] = the stage width",
                       lambda v: _ints(v, 1), "a list of integers >= 1"),
    "proj": OptionSpec(bool, False, "first block gets a 1×1 projection shortcut even when its shape is unchanged"),
    "dropout": OptionSpec(float, 0.0, "dropout between the two convs (WRN)", lambda v: 0.0 <= v < 1.0, "in [0, 1)"),
}

register_block(
    "basic_slim", build_slim_stage, kind="stage", orders=ORDERS, options=SLIM_OPTIONS, check=check_slim,
    norm_widths=lambda st, in_chs: set(st.block_kw.get("mids", ())), searchable=False,  # = basic by default
    example={"block_args": {"mids": [6], "proj": True}},
    doc="Residual basic blocks with a per-block inner width (a channel-pruned `basic` stage; Molchanov et al. 2019)",
)
