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
