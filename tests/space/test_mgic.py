"""MGIC block (Eliasof et al. 2023): channel V-cycle of grouped convs, linear parameter growth."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from space import Arch, Layers, SpecError, Stage, Stem, build_model, get_preset
from space.blocks.basic import BasicBlock
from space.blocks.mgic import MGICBlock, MGICLevel, ResidualStep, level_widths
from space.complexity import count_complexity


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _mgic(width: int, *, order: str = "post", **kw) -> MGICBlock:
    return MGICBlock(width, width, 1, layers=Layers(order=order), **kw)


def test_params_grow_linearly_in_width_for_fixed_group_size():
    """Doubling C doubles an MGIC block's parameters (ratio ≈ 2) but quadruples a dense basic block's."""
    mg = _params(_mgic(256, group_size=8)) / _params(_mgic(128, group_size=8))
    dense = _params(BasicBlock(256, 256, 1, layers=Layers())) / _params(BasicBlock(128, 128, 1, layers=Layers()))
    assert 1.8 < mg < 2.2
    assert 3.9 < dense < 4.1
    assert _params(_mgic(256, group_size=8)) < _params(BasicBlock(256, 256, 1, layers=Layers())) / 10


def test_hierarchy_halves_channels_down_to_a_dense_coarsest_level():
    assert level_widths(64, 8) == [64, 32, 16, 8]
    assert level_widths(48, 16) == [48, 24, 12]
    block = _mgic(64, group_size=8, coarsest_width=8)
    levels, node = [], block.cycle
    while isinstance(node, MGICLevel):
        levels.append(node)
        node = node.coarse
    assert [lv.restrict.in_channels for lv in levels] == [64, 32, 16]
    assert [lv.restrict.groups for lv in levels] == [8, 4, 2]  # group size 8 at every level
    assert [lv.prolong.groups for lv in levels] == [8, 4, 2]
    assert all(lv.restrict.kernel_size == (1, 1) and lv.prolong.kernel_size == (1, 1) for lv in levels)
    assert [lv.smooth.body[0][0].groups for lv in levels] == [8, 4, 2]  # grouped 3×3 smoothing
    assert isinstance(node, ResidualStep) and node.body[0][0].in_channels == 8
    assert node.body[0][0].groups == 1 and node.body[0][0].kernel_size == (3, 3)  # fully coupled


@pytest.mark.parametrize("order", ["post", "pre"])
def test_every_output_channel_depends_on_every_input_channel(order):
    """Full coupling: the grouped convs alone would couple only 8 channels; the cycle couples all 64."""
    block = _mgic(64, order=order, group_size=8).eval()
    x = torch.randn(1, 64, 6, 6, requires_grad=True)
    block(x)[:, 0].sum().backward()
    per_channel = x.grad.abs().sum((0, 2, 3))
    assert (per_channel > 0).all()
    fine_only = next(m for m in block.cycle.smooth.body[0] if isinstance(m, nn.Conv2d))  # one grouped conv
    y = fine_only(x)[:, 0].sum()
    (g,) = torch.autograd.grad(y, x)
    assert (g.abs().sum((0, 2, 3)) > 0).sum() == 8


@pytest.mark.parametrize("order", ["post", "pre"])
def test_stride_and_width_change_through_the_connector(order):
    block = MGICBlock(32, 64, 2, layers=Layers(order=order), group_size=8, coarsest_width=8).eval()
    conv = next(m for m in block.connector if isinstance(m, nn.Conv2d))
    assert conv.groups == 32 and conv.stride == (2, 2)
    out = block(torch.randn(2, 32, 16, 16))
    assert out.shape == (2, 64, 8, 8) and torch.isfinite(out).all()
    if order == "post":
        assert (out >= 0).all()  # post-activation ends with the act


def test_spec_rejects_impossible_widths_and_orders():
    def arch(**kw):
        return Arch(stem=Stem(16, norm_act=True), stages=(Stage("mgic", 1, **kw),))

    with pytest.raises(SpecError, match=r"stages\[0\].*grid width 24 .*group_size=16"):
        arch(width=48)
    with pytest.raises(SpecError, match="odd width 9"):
        arch(width=36, block_args={"group_size": 2, "coarsest_width": 4})
    with pytest.raises(SpecError, match="group_size"):
        arch(width=64, block_args={"group_size": 7})
    with pytest.raises(SpecError, match="supports orders post, pre"):
        arch(width=64, order="white_conv")
    arch(width=96, block_args={"group_size": 8, "coarsest_width": 12})  # 96 → 48 → 24 → 12: valid


def test_mgic_cifar_is_sized_like_wrn_16_4():
    ref = count_complexity(build_model(get_preset("wrn-16-4"), num_classes=10), input_size=32, in_chans=3)
    ours = count_complexity(build_model(get_preset("mgic-cifar"), num_classes=10), input_size=32, in_chans=3)
    assert abs(ours["macs"] / ref["macs"] - 1) < 0.1
    assert ours["params"] < ref["params"]  # same cost, fewer weights: the point of MGIC
