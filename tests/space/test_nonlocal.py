"""Non-local blocks: ``nl`` (softmax, Wang et al. 2018) and ``nl_scaled`` (softmax-free, Cho et al. 2022)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from space import ATTENTIONS, Arch, Head, SpecError, Stage, Stem, build_model
from space.attention.non_local import NonLocal, ScaledNonLocal
from space.complexity import count_complexity

VARIANTS = ("nl", "nl_scaled")


def _arch(attention: str, **attn_args) -> Arch:
    stage = Stage("basic", 1, 16, 1, attention=attention, attn_args=attn_args)
    return Arch(stem=Stem(width=16), stages=(stage,), head=Head(), input_size=8)


def _blocks(model: nn.Module) -> list[NonLocal]:
    return [m for m in model.modules() if isinstance(m, NonLocal)]


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("train", [True, False])
def test_identity_at_init_after_builder_init(name, train):
    model = build_model(_arch(name), num_classes=3)
    blocks = _blocks(model)
    assert len(blocks) == 1
    block = blocks[0].train(train)
    x = torch.randn(2, 16, 7, 5) * 3
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("name", VARIANTS)
def test_not_identity_once_gamma_moves(name):
    block = _blocks(build_model(_arch(name), num_classes=3))[0].eval()
    with torch.no_grad():
        block.norm.weight.fill_(0.5)
        block.norm.bias.fill_(0.1)  # the reference's 0.01-std convs keep W_z y small; β moves z for sure
    x = torch.randn(2, 16, 6, 6)
    assert (block(x) - x).abs().max() > 1e-3
    block.reset_nas_parameters()  # the hook the builder calls after its generic init
    assert torch.equal(block(x), x)


def test_softmax_rows_sum_to_one_scaled_rows_do_not():
    torch.manual_seed(1)
    x = torch.randn(2, 16, 6, 5)
    soft = NonLocal(16)
    scaled = ScaledNonLocal(16)
    a_soft, a_scaled = soft.attention(x), scaled.attention(x)
    assert a_soft.shape == a_scaled.shape == (2, 30, 30)
    assert torch.allclose(a_soft.sum(-1), torch.ones(2, 30), atol=1e-5)
    assert (a_soft > 0).all()
    assert (a_scaled.sum(-1) - 1).abs().max() > 0.1
    assert (a_scaled < 0).any()  # a raw dot product, not a distribution


@pytest.mark.parametrize("scale,factor", [("sqrt_n", lambda n: n ** -0.5), ("n", lambda n: 1.0 / n)])
def test_scaled_attention_is_dot_product_times_factor(scale, factor):
    x = torch.randn(1, 8, 4, 3)
    block = ScaledNonLocal(8, scale=scale)
    theta = block.t(x).flatten(2).transpose(1, 2)
    phi = block.p(x).flatten(2)
    expected = theta @ phi * factor(12)
    assert torch.allclose(block.attention(x), expected, atol=1e-6)


def test_forward_is_x_plus_bn_wz_of_attention_times_g():
    torch.manual_seed(2)
    block = ScaledNonLocal(8).eval()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
        block.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 3, 4)
    g = block.g(x).flatten(2).transpose(1, 2)
    y = (block.attention(x) @ g).transpose(1, 2).reshape(2, 4, 3, 4)
    assert torch.allclose(block(x), x + block.norm(block.z(y)), atol=1e-6)


def test_embedding_width_follows_reduction():
    assert NonLocal(16).rd_channels == 8  # Wang et al.: C/2
    assert ScaledNonLocal(16, reduction=0.25).t.out_channels == 4
    model = build_model(_arch("nl_scaled", reduction=0.25), num_classes=3)
    assert _blocks(model)[0].g.out_channels == 4


@pytest.mark.parametrize("name", VARIANTS)
def test_attention_cost_counted(name):
    """MACs = four 1×1 convs (θ, φ, g, W_z: 4·N·C·C') + the two N×N products (2·N²·C')."""
    c, size, rd = 16, 6, 8
    n = size * size
    macs = count_complexity(nn.Sequential(ATTENTIONS.get(name)(c)), input_size=size, in_chans=c)["macs"]
    assert macs == 4 * n * c * rd + 2 * n * n * rd


def test_bad_options_name_the_field():
    with pytest.raises(SpecError, match=r"attn_args\.scale"):
        _arch("nl_scaled", scale="softmax")
    with pytest.raises(SpecError, match=r"attn_args\.reduction"):
        _arch("nl", reduction=0.0)
    with pytest.raises(SpecError, match=r"attn_args\.scale"):
        _arch("nl", scale="n")  # the softmax block has no scale option
    assert math.isclose(ATTENTIONS.entry("nl_scaled").options["reduction"].default, 0.5)


# --------------------------------------------------------------------------- placement, heads, position encoding


def _stage_arch(attention: str, depth: int, **attn_args) -> Arch:
    stage = Stage("basic", depth, 16, 1, attention=attention, attn_args=attn_args)
    return Arch(stem=Stem(width=16), stages=(stage,), head=Head(), input_size=8)


@pytest.mark.parametrize("name", VARIANTS)
def test_one_block_on_the_stream_before_the_last_block(name):
    model = build_model(_stage_arch(name, 3), num_classes=3)
    stage = model.stages[0]
    assert [n for n, _ in stage.named_children()] == ["0", "1", "attention", "2"]
    assert len(_blocks(model)) == 1 and isinstance(stage.attention, NonLocal)
    seen = {}
    stage[1].register_forward_hook(lambda m, i, o: seen.__setitem__("block1", o))
    stage.attention.register_forward_hook(lambda m, i, o: seen.__setitem__("nl_in", i[0]))
    model(torch.randn(2, 3, 8, 8))
    assert seen["nl_in"] is seen["block1"]  # the full feature stream, not a residual branch
    single = build_model(_stage_arch(name, 1), num_classes=3).stages[0]
    assert [n for n, _ in single.named_children()] == ["0", "attention"]


def test_every_block_variant_gates_each_residual_branch():
    model = build_model(_stage_arch("nl_scaled", 3, every_block=True), num_classes=3)
    assert len(_blocks(model)) == 3 and all(isinstance(b.attn, NonLocal) for b in model.stages[0])


def test_convs_have_no_bias_and_reference_init():
    block = _blocks(build_model(_stage_arch("nl", 2, reduction=1.0), num_classes=3))[0]
    for conv in (block.t, block.p, block.g, block.z):
        assert conv.bias is None
        assert abs(conv.weight.std().item() - 0.01) < 0.002


def test_multi_head_attention_per_head():
    """Per head h: A_h = θ_hᵀφ_h/√N over its C'/heads channels; z = x + BN(W_z [A_1 g_1; ...; A_H g_H])."""
    torch.manual_seed(3)
    heads, c = 4, 16
    block = ScaledNonLocal(c, reduction=1.0, heads=heads).eval()
    with torch.no_grad():
        block.norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, c, 3, 5)
    n, ch = 15, c // heads
    theta, phi, g = (conv(x).reshape(2, c, n) for conv in (block.t, block.p, block.g))
    ys = []
    for h in range(heads):
        rows = slice(h * ch, (h + 1) * ch)
        a = torch.einsum("bci,bcj->bij", theta[:, rows], phi[:, rows]) / math.sqrt(n)
        ys.append(torch.einsum("bij,bcj->bci", a, g[:, rows]))
    y = torch.cat(ys, 1).reshape(2, c, 3, 5)
    assert torch.allclose(block(x), x + block.norm(block.z(y)), atol=1e-5)
    assert block.attention(x).shape == (2 * heads, n, n)
    with pytest.raises(SpecError, match=r"heads"):
        _stage_arch("nl_scaled", 2, heads=3)


def test_sine_position_encoding_is_added_to_the_input():
    """Cho et al.'s table: channel k < C/2 holds sin/cos(row / 10000^(2⌊k/2⌋/(C/2))), the rest the column."""
    c, h, w = 8, 3, 5
    d = c // 2
    table = torch.zeros(c, h, w, dtype=torch.float64)
    for k in range(d):
        rate = 10000 ** (2 * (k // 2) / d)
        fn = math.sin if k % 2 == 0 else math.cos
        for i in range(h):
            table[k, i, :] = fn(i / rate)
        for j in range(w):
            table[d + k, :, j] = fn(j / rate)
    assert _blocks(build_model(_stage_arch("nl_scaled", 2, pos_enc="sine"), num_classes=3))[0].pos_enc == "sine"
    block = ScaledNonLocal(c, pos_enc="sine")
    block.reset_nas_parameters()
    x = torch.randn(2, c, h, w)
    assert torch.allclose(block.train()(x), x + table.float(), atol=1e-6)  # zero-γ BN: z = x + P at init
