"""Selective Kernel unit, ``sk``/``sk_basic`` blocks and the SKNet presets (Li et al. 2019)."""
from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import yaml
from timm.layers import SelectiveKernel

from space import Arch, Layers, SpecError, Stage, Stem, build_model, get_preset
from space.blocks.sk import SKBasic, SKBottleneck, SKConv
from space.complexity import count_complexity

GOLDEN = yaml.safe_load((Path(__file__).parents[1] / "golden.yaml").read_text())


def _sk(in_chs=32, out_chs=32, stride=1, **kw) -> SKConv:
    return SKConv(in_chs, out_chs, stride, layers=Layers(), **kw).eval()


@pytest.mark.parametrize("branches", [2, 3])
def test_branch_weights_are_a_softmax_over_branches(branches):
    sk = _sk(branches=branches, groups=4)
    a = sk.branch_weights(torch.randn(3, 32, 8, 8))
    assert a.shape == (3, branches, 32)
    assert (a > 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(3, 32))
    assert not torch.allclose(a[0], a[1])  # input-dependent


@pytest.mark.parametrize("winner", [0, 1])
def test_forcing_one_branch_gives_that_branch(winner):
    """Eq. (6): with branch ``winner``'s logits pushed up, V equals that branch's output U_winner."""
    sk, x = _sk(groups=4), torch.randn(2, 32, 8, 8)
    c = sk.out_channels

    def push(_m, _inp, logits):
        logits = logits.clone()
        logits[:, winner * c:(winner + 1) * c] += 1e4
        return logits

    handle = sk.attn.fc_select.register_forward_hook(push)
    try:
        with torch.no_grad():
            out = sk(x)
            a = sk.branch_weights(x)
    finally:
        handle.remove()
    torch.testing.assert_close(a[:, winner], torch.ones(2, c))
    with torch.no_grad():
        expected = sk.paths[winner](x)
        other = sk.paths[1 - winner](x)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, other)


def test_branches_are_dilated_grouped_3x3_and_fuse_width_follows_paper():
    sk = _sk(64, 128, 2, branches=3, groups=8)
    convs = [p[0] for p in sk.paths]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3
    assert [c.dilation for c in convs] == [(1, 1), (2, 2), (3, 3)]
    assert all(c.groups == 8 and c.stride == (2, 2) for c in convs)
    assert sk.attn.fc_reduce.out_channels == 32  # d = max(128 / 16, 32)
    assert sk.attn.fc_select.out_channels == 3 * 128
    assert sk.attn.fc_reduce.bias is None and sk.attn.fc_select.bias is None  # W and A_m of eqs. 4-5
    assert _sk(1024, 1024).attn.fc_reduce.out_channels == 64  # d = max(1024 / 16, 32)
    assert _sk(64, 64, reduction=4, min_dim=8).attn.fc_reduce.out_channels == 16
    assert _sk(32, 40, min_dim=8).attn.fc_reduce.out_channels == 8  # no rounding to multiples of 8 here


def test_sk_conv_matches_timm_selective_kernel():
    """Same weights, same output as timm's SelectiveKernel (whole input to every branch, d given)."""
    ours = _sk(32, 64, 2, groups=4)
    ref = SelectiveKernel(32, 64, kernel_size=[3, 5], stride=2, groups=4, rd_channels=32, split_input=False).eval()
    src = list(ours.state_dict().values())
    dst = ref.state_dict()
    assert [t.shape for t in src] == [t.shape for t in dst.values()]
    ref.load_state_dict(dict(zip(dst, src)))
    with torch.no_grad():
        for m in (ours, ref):  # non-trivial BN statistics
            for bn in m.modules():
                if isinstance(bn, torch.nn.BatchNorm2d):
                    torch.manual_seed(bn.num_features)
                    bn.running_mean.normal_()
                    bn.running_var.uniform_(0.5, 2.0)
        x = torch.randn(2, 32, 10, 10)
        torch.testing.assert_close(ours(x), ref(x))


def test_sk_bottleneck_shape_and_widths():
    block = SKBottleneck(64, 128, 2, layers=Layers(), groups=8, bottleneck_ratio=0.5).eval()
    assert block.conv2.out_channels == 64 and block.conv2.paths[0][0].groups == 8
    assert block(torch.randn(2, 64, 16, 16)).shape == (2, 128, 8, 8)
    basic = SKBasic(16, 32, 2, layers=Layers(), min_dim=8).eval()
    assert basic(torch.randn(2, 16, 16, 16)).shape == (2, 32, 8, 8)


def test_groups_must_divide_bottleneck_width():
    with pytest.raises(SpecError, match=r"stages\[0\].*groups=32 must divide .* 8"):
        Arch(stem=Stem(16, norm_act=True), stages=(Stage("sk", 1, 16),))
    with pytest.raises(SpecError, match="stages\\[0\\].block_args.branches"):
        Arch(stem=Stem(), stages=(Stage("sk", 1, 256, block_args={"branches": 1}),))
    with pytest.raises(SpecError, match="orders post"):
        Arch(stem=Stem(), stages=(Stage("sk_basic", 1, 32, order="pre"),))


def test_sknet50_params_match_paper_and_timm():
    """SKNet-50 (Table 2): 27.5M params; timm's skresnext50_32x4d is the same network."""
    gold = GOLDEN["sknet-50"]
    arch = get_preset("sknet-50")
    assert arch.input_size == gold["input_size"]
    model = build_model(arch, num_classes=gold["num_classes"])
    params = sum(p.numel() for p in model.parameters())
    assert abs(params / gold["params"] - 1) <= gold["tolerance"]
    ref = timm.create_model("skresnext50_32x4d", num_classes=gold["num_classes"])
    assert params == sum(p.numel() for p in ref.parameters())


def test_sknet50_macs_match_paper():
    """SKNet-50 (Table 2): 4.47 G multiply-adds at 224×224 (measured 4.463 G)."""
    gold = GOLDEN["sknet-50"]
    model = build_model(get_preset("sknet-50"), num_classes=gold["num_classes"])
    c = count_complexity(model, input_size=gold["input_size"], in_chans=3)
    assert abs(c["macs"] / gold["macs"] - 1) <= gold["tolerance"]


def test_sknet_cifar_is_sized_like_wrn_16_4():
    ref = count_complexity(build_model(get_preset("wrn-16-4"), num_classes=10), input_size=32, in_chans=3)
    ours = count_complexity(build_model(get_preset("sknet-cifar"), num_classes=10), input_size=32, in_chans=3)
    assert abs(ours["macs"] / ref["macs"] - 1) < 0.1
    assert all(s.block == "sk" for s in get_preset("sknet-cifar").stages)
