"""Basic-block stage with low-rank (factorised) 3×3 convs: what LRPET training exports.

``basic_lowrank`` is ``basic_slim`` plus ``ranks``: two per block (conv1, conv2). Rank ``r > 0``
replaces that k×k conv by a k×k conv to ``r`` channels followed by a 1×1 conv back to the output
width (:class:`~space.blocks.slim.FactorisedConv`); ``0`` keeps it dense. Guo et al., "Compact
Model Training by Low-Rank Projection with Energy Transfer" (LRPET, TNNLS 2023): train, project
each conv onto rank r after every epoch, then decompose W = U·V.
"""
from __future__ import annotations

from ..registry import OptionSpec, register_block
from .slim import ORDERS, SLIM_OPTIONS, _ints, build_slim_stage, check_slim

register_block(
    "basic_lowrank", build_slim_stage, kind="stage", orders=ORDERS, check=check_slim,
    norm_widths=lambda st, in_chs: set(st.block_kw.get("mids", ())), searchable=False,  # = basic by default
    options={**SLIM_OPTIONS,
             "ranks": OptionSpec(tuple, (), "rank of conv1 and conv2 of each block (0 = dense); [] = all dense",
                                 lambda v: _ints(v, 0), "a list of integers >= 0")},
    example={"block_args": {"mids": [8], "ranks": [4, 3]}},
    doc="Residual basic blocks with factorised k×k→r, 1×1 r→C convs of given ranks (LRPET export; Guo et al. 2023)",
)
