"""Residual Attention stage (Wang et al. 2017) and the resattn-56/-92/-cifar presets."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from space import Arch, Layers, SpecError, Stage, Stem, build_model, build_stage, from_yaml, get_preset
from space.blocks.bottleneck import Bottleneck
from space.blocks.resattn import AttentionModule, SoftMaskBranch
from space.complexity import count_complexity

GOLDEN = yaml.safe_load((Path(__file__).resolve().parents[1] / "golden.yaml").read_text())
PRE = Layers(order="pre")


def _units(module: torch.nn.Module) -> int:
    return sum(isinstance(m, Bottleneck) for m in module.modules())


def _module(chs: int = 16, **kw) -> AttentionModule:
    opts = {"p": 1, "t": 2, "r": 1, "mask_depth": 2, **kw}
    return AttentionModule(chs, layers=PRE, **opts).eval()


@pytest.mark.parametrize("size", [(16, 16), (13, 11)])
def test_mask_strictly_between_zero_and_one(size):
    module = _module(mask_depth=3)
    x = torch.randn(2, 16, *size)
    with torch.no_grad():
        parts = module.parts(x)
    mask = parts["mask"]
    assert mask.shape == parts["trunk"].shape == x.shape
    assert (mask > 0).all() and (mask < 1).all()
    assert mask.std() > 0  # position/channel dependent, not a constant


def test_mask_forced_to_zero_gives_the_trunk():
    module = _module()
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        with_mask = module(x)
        module.mask_override = 0.0
        parts = module.parts(x)
        out = module(x)
        trunk_only = module.post(module.trunk(module.pre(x)))
    assert torch.equal(parts["fused"], parts["trunk"])
    assert torch.equal(out, trunk_only)
    assert not torch.allclose(with_mask, out)  # the learned mask does change the output


def test_attention_residual_learning_formula():
    module = _module()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        parts = module.parts(x)
    assert torch.allclose(parts["fused"], parts["trunk"] + parts["mask"] * parts["trunk"])


@pytest.mark.parametrize("depth,r", [(1, 1), (2, 1), (3, 1), (2, 2)])
def test_mask_branch_unit_count(depth, r):
    """Down depth·r, bottom r, skips depth-1, up (depth-1)·r: Attention-56 stage 1 (depth 3) has 3+1+2+2 = 8."""
    mask = SoftMaskBranch(16, depth=depth, r=r, layers=PRE)
    assert _units(mask) == depth * r + r + (depth - 1) + (depth - 1) * r
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in mask.modules()) == depth


def test_stage_layout_stride_and_width():
    stage = Stage("resattn", 2, 32, 2, order="pre", block_args={"p": 1, "t": 2, "r": 1, "mask_depth": 2})
    built = build_stage(stage, 16)
    assert isinstance(built[0], Bottleneck) and built[0].shortcut is not None  # the strided projection unit
    assert [type(m) for m in built[1:]] == [AttentionModule, AttentionModule]
    per_module = 2 * 1 + 2 + (2 + 1 + 1 + 1)  # p pre + p post, t trunk, mask (3·depth - 1 for r=1)
    assert _units(built) == 1 + 2 * per_module
    out = built(torch.randn(2, 16, 16, 16))
    assert out.shape == (2, 32, 8, 8)


def test_only_pre_activation_order_and_bad_options():
    with pytest.raises(SpecError, match=r"order"):
        Arch(stem=Stem(), stages=(Stage("resattn", 1, 16, order="post"),))
    with pytest.raises(SpecError, match=r"block_args\.mask_depth"):
        Arch(stem=Stem(), stages=(Stage("resattn", 1, 16, order="pre", block_args={"mask_depth": 0}),))
    with pytest.raises(SpecError, match=r"width"):
        Arch(stem=Stem(), stages=(Stage("resattn", 1, 2, order="pre"),))


def test_presets_round_trip_and_layout():
    a56, a92 = get_preset("resattn-56"), get_preset("resattn-92")
    for arch in (a56, a92, get_preset("resattn-cifar")):
        assert from_yaml(arch.to_yaml()) == arch
    assert [s.depth for s in a56.stages[:3]] == [1, 1, 1] and [s.depth for s in a92.stages[:3]] == [1, 2, 3]
    assert [s.block_kw.get("mask_depth", 1) for s in a56.stages[:3]] == [3, 2, 1]  # 1 is the default
    assert [(s.width, s.stride) for s in a56.stages] == [(256, 1), (512, 2), (1024, 2), (2048, 2)]
    assert (a56.stages[3].block, a56.stages[3].depth, a56.stages[3].order) == ("bottleneck", 3, "pre")


def test_resattn_92_params_equal_the_authors_prototxt():
    """Exact count of the authors' Attention-92 deploy prototxt (no fvcore: fast)."""
    model = build_model(get_preset("resattn-92"), num_classes=1000)
    assert sum(p.numel() for p in model.parameters()) == 52_466_344


def _check_golden(name: str) -> dict[str, int]:
    gold = GOLDEN[name]
    arch = get_preset(name)
    assert arch.input_size == gold["input_size"]
    model = build_model(arch, num_classes=gold["num_classes"])
    got = count_complexity(model, input_size=gold["input_size"], in_chans=3)
    for key in ("params", "macs"):
        assert abs(got[key] / gold[key] - 1) <= gold["tolerance"], (name, key, got[key], gold[key])
    return got


def test_resattn_56_matches_published_and_prototxt():
    got = _check_golden("resattn-56")
    assert got["params"] == 31_810_728  # the authors' Attention-56 deploy prototxt, layer for layer
    assert got["macs"] == 6_270_836_736


@pytest.mark.slow
def test_resattn_92_matches_published():
    _check_golden("resattn-92")


def test_resattn_cifar_sized_like_wrn_16_4():
    mine = count_complexity(build_model(get_preset("resattn-cifar"), num_classes=10), input_size=32, in_chans=3)
    wrn = count_complexity(build_model(get_preset("wrn-16-4"), num_classes=10), input_size=32, in_chans=3)
    assert abs(mine["macs"] / wrn["macs"] - 1) <= 0.05
    assert get_preset("resattn-cifar").input_size == 32
