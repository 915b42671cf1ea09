"""Bottleneck block (ResNet/ResNeXt/RegNetX, WRN pre-activation bottleneck) and its presets."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
import yaml

from space import Arch, Head, Layers, SpecError, Stage, Stem, build_model, get_preset, preset_meta
from space.blocks.bottleneck import Bottleneck
from space.complexity import count_complexity

GOLDEN = yaml.safe_load((Path(__file__).resolve().parents[1] / "golden.yaml").read_text())


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _capture(store: dict, key: str):
    """A forward hook that records the module's input (and returns None: the output is unchanged)."""
    def hook(_module, inputs, _output) -> None:
        store[key] = inputs[0]
    return hook


@pytest.mark.parametrize("ratio,gw,mid,groups", [(0.25, 0, 64, 1), (0.5, 4, 128, 32), (1.0, 64, 256, 4),
                                                 (0.25, 128, 64, 1)])
def test_bottleneck_width_and_cardinality(ratio, gw, mid, groups):
    blk = Bottleneck(64, 256, 2, layers=Layers(), bottle_ratio=ratio, group_width=gw)
    assert (blk.conv1.out_channels, blk.conv2.out_channels, blk.conv3.out_channels) == (mid, mid, 256)
    assert blk.conv2.groups == groups and blk.conv2.stride == (2, 2) and blk.conv1.stride == (1, 1)
    assert blk(torch.randn(2, 64, 8, 8)).shape == (2, 256, 4, 4)


def test_bottleneck_rejects_indivisible_group_width():
    with pytest.raises(SpecError, match=r"stages\[0\]: block_args.group_width.*not divisible by group_width 40"):
        Arch(stem=Stem(), stages=(Stage("bottleneck", 1, 96, block_args={"bottle_ratio": 1.0, "group_width": 40}),))


@pytest.mark.parametrize("order", ["post", "pre", "white_conv"])
def test_bottleneck_identity_shortcut_and_order(order):
    """With the last conv zeroed the branch is 0: post gives ReLU(x), pre and white_conv's add gives x (+act)."""
    blk = Bottleneck(32, 32, 1, layers=Layers(order=order)).eval()
    nn.init.zeros_(blk.conv3.weight)
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        out = blk(x)
    assert torch.allclose(out, x if order == "pre" else torch.relu(x))
    if order == "post":
        assert isinstance(blk.norm3, nn.BatchNorm2d) and blk.norm3.num_features == 32
    else:  # norms read the conv inputs: the first one the block input
        assert blk.norm1.num_features == 32 and blk.norm3.num_features == blk.mid_chs


def test_pre_order_projection_reads_the_preactivated_input():
    blk = Bottleneck(16, 32, 2, layers=Layers(order="pre")).eval()
    seen = {}
    blk.shortcut.register_forward_hook(_capture(seen, "x"))
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        blk(x)
        assert torch.allclose(seen["x"], blk.act1(blk.norm1(x)))


def test_attention_gates_the_branch_before_the_add():
    blk = Bottleneck(32, 32, 1, layers=Layers(attn_name="se")).eval()
    seen = {}
    blk.attn.register_forward_hook(_capture(seen, "y"))
    x = torch.randn(2, 32, 6, 6)
    with torch.no_grad():
        out = blk(x)
        branch = blk.norm3(blk.conv3(blk.act2(blk.norm2(blk.conv2(blk.act1(blk.norm1(blk.conv1(x))))))))
        assert torch.allclose(seen["y"], branch)
        assert torch.allclose(out, torch.relu(blk.attn(branch) + x))


def _timm_regnet_key(key: str) -> str:
    key = re.sub(r"^stem\.conv\.", "stem.0.", key)
    key = re.sub(r"^stem\.bn\.", "stem.1.", key)
    key = re.sub(r"^s(\d)\.b(\d+)\.", lambda m: f"stages.{int(m[1]) - 1}.{int(m[2]) - 1}.", key)
    key = re.sub(r"conv(\d)\.conv\.", r"conv\1.", key)
    key = re.sub(r"conv(\d)\.bn\.", r"norm\1.", key)
    key = key.replace("downsample.conv.", "shortcut.0.").replace("downsample.bn.", "shortcut.1.")
    return key.replace("head.fc.", "classifier.")


def test_regnetx_block_is_timm_regnet_x_block():
    """timm's regnetx_002 rebuilt as bottleneck stages (b=1, its group width): same weights → same outputs."""
    ref = timm.create_model("regnetx_002").eval()
    stages = []
    for s in (ref.s1, ref.s2, ref.s3, ref.s4):
        blocks = list(s.children())
        conv2 = blocks[0].conv2.conv
        stages.append(Stage("bottleneck", len(blocks), blocks[0].conv3.conv.out_channels, 2,
                            block_args={"bottle_ratio": 1.0, "group_width": conv2.out_channels // conv2.groups}))
    arch = Arch(stem=Stem(width=32, stride=2, norm_act=True), stages=tuple(stages), head=Head(), input_size=224)
    ours = build_model(arch, num_classes=1000).eval()
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    ours.load_state_dict({_timm_regnet_key(k): v for k, v in ref.state_dict().items()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("name,timm_name", [("regnetx-3.2gf", "regnetx_032"), ("resnext50-32x4d", "resnext50_32x4d")])
def test_presets_match_timm_params_and_published_macs(name, timm_name):
    arch, gold = get_preset(name), GOLDEN[name]
    model = build_model(arch, num_classes=gold["num_classes"])
    assert _params(model) == _params(timm.create_model(timm_name))
    assert preset_meta(name)["published"]["input_size"] == gold["input_size"] == arch.input_size
    out = count_complexity(model, input_size=arch.input_size, in_chans=3)
    for key in ("params", "macs"):
        assert out[key] == pytest.approx(gold[key], rel=gold["tolerance"]), (key, out[key])


def test_resnext_cifar_costs_about_wrn_16_4():
    ref = count_complexity(build_model(get_preset("wrn-16-4"), num_classes=10), input_size=32, in_chans=3)
    arch = get_preset("resnext-cifar")
    assert preset_meta("resnext-cifar")["sized_to"] == "wrn-16-4"
    assert all(s.block_kw["group_width"] * 8 == s.width * s.block_kw["bottle_ratio"] for s in arch.stages)  # C=8
    out = count_complexity(build_model(arch, num_classes=10), input_size=32, in_chans=3)
    assert out["macs"] == pytest.approx(ref["macs"], rel=0.05)
