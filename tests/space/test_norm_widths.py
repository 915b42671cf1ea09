"""Registry meta ``norm_widths``: every width a block normalises with the stage norm is declared.

The spec checks the norm on a stage's width (and its input width for ``pre``/``white_conv``); a block
that normalises other widths (a bottleneck, GhostNet's expanded width, G-Ghost's raw/cheap split)
declares them, so that the search space can reject a norm that would fail on them before building.
The test records the widths each registered block really asks ``layers.norm`` for.
"""
from __future__ import annotations

import pytest

from space import BLOCKS, Arch, Head, Stage, Stem, build_stage
from space.layers import Layers


def _stage(entry, order: str, width: int) -> Stage:
    kw = {"block": entry.name, "order": order, "depth": 2, "width": width, "stride": 2,
          **entry.meta.get("example", {})}
    kw["depth"], kw["width"] = max(kw["depth"], 2), width
    if "mids" in kw.get("block_args", {}):  # basic_slim/basic_lowrank: one inner width per block
        args = dict(kw["block_args"])
        args["mids"] = [6 + 2 * i for i in range(kw["depth"])]
        args.pop("ranks", None)
        kw["block_args"] = args
    arch = Arch(stem=Stem(width=24), stages=(Stage(**kw),), head=Head(), input_size=32)
    return arch.stages[0]  # validated: options coerced, as the search space sees them


@pytest.mark.parametrize("name", BLOCKS.names())
def test_declared_norm_widths_cover_the_built_stage(name, monkeypatch):
    entry = BLOCKS.entry(name)
    declared_fn = entry.meta.get("norm_widths", lambda stage, in_chs: set())
    original = Layers.norm
    for order in entry.meta["orders"]:
        for width in (32, 64):
            stage = _stage(entry, order, width)
            seen: set[int] = set()

            def norm(self, channels, seen=seen, **overrides):
                seen.add(channels)
                return original(self, channels, **overrides)

            monkeypatch.setattr(Layers, "norm", norm)
            build_stage(stage, 24)
            monkeypatch.setattr(Layers, "norm", original)
            declared = {24, width} | set(declared_fn(stage, 24))
            assert seen and seen <= declared, f"{name}/{order}/{width}: undeclared {sorted(seen - declared)}"
