"""Ghost module, Ghost bottleneck, GhostNet presets (Han et al. CVPR 2020) and the G-Ghost stage (IJCV 2022)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
import yaml

from space import Arch, Head, Layers, SpecError, Stage, Stem, build_model, build_stage, get_preset, preset_meta
from space.blocks.gghost import GGhostStage, gghost_split
from space.blocks.ghost import GhostBottleneck, NasGhostModule
from space.complexity import count_complexity

GOLDEN = yaml.safe_load((Path(__file__).resolve().parents[1] / "golden.yaml").read_text())
GHOSTNETS = {"ghostnet-0.5": "ghostnet_050", "ghostnet-1.0": "ghostnet_100", "ghostnet-1.3": "ghostnet_130"}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _capture(store: dict, key: str):
    """A forward hook that records the module's input (and returns None: the output is unchanged)."""
    def hook(_module, inputs, _output) -> None:
        store[key] = inputs[0]
    return hook


def _assert_golden(name: str, measured: dict) -> None:
    gold = GOLDEN[name]
    arch = get_preset(name)
    assert arch.input_size == gold["input_size"] == preset_meta(name)["published"]["input_size"]
    for key in ("params", "macs"):
        assert measured[key] == pytest.approx(gold[key], rel=gold["tolerance"]), (name, key, measured[key])


# --------------------------------------------------------------------------- Ghost module / bottleneck


@pytest.mark.parametrize("out_chs,ratio,dw_size", [(16, 2, 3), (13, 3, 3), (7, 2, 5), (24, 4, 1)])
def test_ghost_module_is_primary_plus_cheap_cut_to_c(out_chs, ratio, dw_size):
    m = NasGhostModule(8, out_chs, layers=Layers(), ratio=ratio, dw_size=dw_size).eval()
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        out, primary = m(x), m.primary_conv(x)
    init = math.ceil(out_chs / ratio)
    assert out.shape == (2, out_chs, 9, 9)
    assert primary.shape[1] == init == m.init_chs
    assert torch.equal(out[:, :init], primary)
    cheap = m.cheap_operation[0]
    assert cheap.groups == init and cheap.kernel_size == (dw_size, dw_size)  # depthwise d×d on the intrinsic maps


def test_ghost_module_projection_is_linear():
    m = NasGhostModule(8, 12, layers=Layers(), act=False).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        assert (m(x) < 0).any()  # no ReLU on the projection module
        assert torch.allclose(m(2 * x) - m(x), m(x) - m(torch.zeros_like(x)), atol=1e-5)


def test_ghost_bottleneck_structure_and_ghostnet_se():
    blk = GhostBottleneck(24, 40, 2, layers=Layers(), mid=72, kernel=5, se=0.25)
    assert blk.ghost1.out_chs == 72 and blk.ghost2.out_chs == 40
    assert blk.conv_dw.stride == (2, 2) and blk.conv_dw.kernel_size == (5, 5) and blk.conv_dw.groups == 72
    assert blk.se.conv_reduce.out_channels == 20  # make_divisible(72 * 0.25, 4), not timm SEModule's 16/24
    assert type(blk.se.gate).__name__ == "Hardsigmoid"
    assert blk.shortcut[0].groups == 24 and blk.shortcut[0].stride == (2, 2)  # timm's dw + 1×1 shortcut
    assert blk(torch.randn(2, 24, 16, 16)).shape == (2, 40, 8, 8)
    same = GhostBottleneck(40, 40, 1, layers=Layers(), expansion=3.0)
    assert same.mid_chs == 120 and same.conv_dw is None and isinstance(same.shortcut, nn.Identity)


def test_ghost_se_and_stage_attention_are_exclusive():
    with pytest.raises(SpecError, match="block_args.se"):
        Arch(stem=Stem(), stages=(Stage("ghost", 1, 16, block_args={"se": 0.25}, attention="se"),))
    arch = Arch(stem=Stem(), stages=(Stage("ghost", 1, 16, block_args={"mid": 32}, attention="se"),))
    assert build_model(arch, num_classes=3).stages[0][0].se.fc1.in_channels == 32  # stage attention on mid


def test_ghostnet_1_0_is_timm_ghostnet_100():
    ours, ref = build_model(get_preset("ghostnet-1.0"), num_classes=1000), timm.create_model("ghostnet_100")
    assert _params(ours) == _params(ref) == 5_182_508
    for m in ref.modules():  # non-trivial BN statistics, so that a misplaced norm would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    ref_state = ref.state_dict()
    assert [v.shape for v in ours.state_dict().values()] == [v.shape for v in ref_state.values()]
    ours.load_state_dict(dict(zip(ours.state_dict(), ref_state.values())))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours.eval()(x), ref.eval()(x), atol=1e-5)


@pytest.mark.parametrize("name", ["ghostnet-0.5", "ghostnet-1.3"])
def test_ghostnet_widths_match_timm_params(name):
    ours, ref = build_model(get_preset(name), num_classes=1000), timm.create_model(GHOSTNETS[name])
    assert _params(ours) == _params(ref)
    assert _params(ours) == pytest.approx(GOLDEN[name]["params"], rel=GOLDEN[name]["tolerance"])


@pytest.mark.parametrize("name", ["ghostnet-0.5", "ghostnet-1.0", "ghostnet-1.3", "g-ghost-regnetx-3.2gf"])
def test_preset_matches_published_params_and_macs(name):
    arch = get_preset(name)
    model = build_model(arch, num_classes=GOLDEN[name]["num_classes"])
    _assert_golden(name, count_complexity(model, input_size=arch.input_size, in_chans=3))


@pytest.mark.parametrize("name", ["ghostnet-cifar", "g-ghost-cifar"])
def test_cifar_variants_cost_about_wrn_16_4(name):
    ref = count_complexity(build_model(get_preset("wrn-16-4"), num_classes=10), input_size=32, in_chans=3)
    arch = get_preset(name)
    assert arch.input_size == 32 and preset_meta(name)["sized_to"] == "wrn-16-4"
    out = count_complexity(build_model(arch, num_classes=10), input_size=32, in_chans=3)
    assert out["macs"] == pytest.approx(ref["macs"], rel=0.05)


# --------------------------------------------------------------------------- G-Ghost stage


def _gg_stage(width=64, depth=4, **args) -> Stage:
    return Stage("g_ghost", depth, width, 2, block_args={"bottle_ratio": 1.0, "group_width": 16, **args})


@pytest.mark.parametrize("stage", [
    _gg_stage(), _gg_stage(width=48, cheap_ratio=0.25), _gg_stage(depth=3, inner="bottleneck", group_width=0),
    _gg_stage(width=64, bottle_ratio=0.25, group_width=4),
    Stage("g_ghost", 5, 40, 1, block_args={"inner": "basic", "cheap_ratio": 0.7})])
def test_g_ghost_raw_plus_cheap_is_stage_width(stage):
    module = build_stage(stage, 32)
    assert module.raw_chs + module.cheap_chs == stage.width and module.raw_chs > 0 and module.cheap_chs > 0
    assert len(module.raw_blocks) == stage.depth - 2
    out = module(torch.randn(2, 32, 16, 16))
    assert out.shape == (2, stage.width, 16 // stage.stride, 16 // stage.stride)


@pytest.mark.parametrize("group_width", [8, 16, 24, 48, 56])
def test_g_ghost_split_is_the_official_formula_for_x_blocks(group_width):
    q = int(group_width * 0.75)
    for width in range(group_width, 1100, 8):
        official = int(width * 0.5 / q) * q  # g_ghost_regnet.py's Stage, bottle ratio 1
        if official:
            assert gghost_split(width, cheap_ratio=0.5, group_width=group_width) == (official, width - official, q)


def test_g_ghost_split_of_the_official_regnetx_3_2gf():
    arch = get_preset("g-ghost-regnetx-3.2gf")
    model = build_model(arch, num_classes=1000)
    stages = [s for s in model.stages if isinstance(s, GGhostStage)]
    assert [(s.raw_chs, s.cheap_chs) for s in stages] == [(72, 120), (216, 216)]  # raw: multiples of 0.75·48
    assert stages[1].raw_blocks[0].conv2.groups == 216 // 36 and stages[1].first.conv2.groups == 432 // 48


@pytest.mark.parametrize("inner,args", [("bottleneck", {"bottle_ratio": 1.0, "group_width": 16}), ("basic", {})])
def test_g_ghost_stage_is_cheaper_than_the_plain_stage(inner, args):
    gg = Stage("g_ghost", 4, 64, 2, block_args={"inner": inner, **args})
    plain = Stage(inner, 4, 64, 2, block_args=args)
    cost = {}
    for key, stage in (("gg", gg), ("plain", plain)):
        arch = Arch(stem=Stem(width=32, norm_act=True), stages=(stage,), head=Head(), input_size=16)
        cost[key] = count_complexity(build_model(arch, num_classes=10), input_size=16, in_chans=3)
    assert cost["gg"]["macs"] < 0.85 * cost["plain"]["macs"] and cost["gg"]["params"] < cost["plain"]["params"]


def test_g_ghost_mix_carries_raw_intermediates_into_the_cheap_part():
    module = build_stage(_gg_stage(), 32)
    seen = {}
    module.last.register_forward_hook(_capture(seen, "x"))
    module(torch.randn(2, 32, 16, 16))
    seen["x"][:, module.raw_chs:].sum().backward()  # the cheap ("ghost") channels only
    middle = module.raw_blocks[0].conv1.weight.grad  # first narrow block: reaches them only through the mix
    assert middle is not None and middle.abs().sum() > 0
    assert module.mix[0].in_channels == 64 + module.raw_chs * 2  # pooled X0 and both narrow blocks


@pytest.mark.parametrize("stage,field", [
    (Stage("g_ghost", 2, 64, block_args={"group_width": 16, "bottle_ratio": 1.0}), "depth"),
    (Stage("g_ghost", 4, 64, block_args={"inner": "basic", "group_width": 16}), "block_args.group_width"),
    (Stage("g_ghost", 4, 64, block_args={"group_width": 24, "bottle_ratio": 1.0}), "block_args.group_width"),
    (Stage("g_ghost", 4, 8, block_args={"inner": "basic", "cheap_ratio": 0.95}), "block_args.cheap_ratio"),
])
def test_g_ghost_rejects_impossible_stages_with_a_reason(stage, field):
    with pytest.raises(SpecError, match=field):
        Arch(stem=Stem(), stages=(stage,))


@pytest.mark.parametrize("name", [*GHOSTNETS, "ghostnet-cifar", "g-ghost-regnetx-3.2gf", "g-ghost-cifar"])
def test_presets_round_trip_through_yaml(name):
    arch = get_preset(name)
    again = Arch.from_yaml(arch.to_yaml())
    assert again == arch and again.arch_id == arch.arch_id and again.to_yaml() == arch.to_yaml()
