"""Generative (kernel-selecting) convolution and the ``gconv`` block (Park & Shin 2021, CondConv reading)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from space import Arch, Layers, SpecError, Stage, Stem, build_model, get_preset
from space.blocks.gconv import GConvBlock, GenerativeConv2d
from space.complexity import count_complexity


def _gconv(in_chs=8, out_chs=12, stride=1, **kw) -> GenerativeConv2d:
    m = GenerativeConv2d(in_chs, out_chs, 3, stride, **kw)
    m.reset_nas_parameters()
    torch.nn.init.normal_(m.route.weight, 0.0, 1.0)  # a non-trivial selection
    return m


def _plain_conv(m: GenerativeConv2d, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, weight, None, m.conv.stride, m.conv.padding, m.conv.dilation, m.conv.groups)


def test_selection_weights_are_a_distribution_over_kernels():
    m = _gconv(num_kernels=5)
    a = m.selection(torch.randn(6, 8, 7, 7))
    assert a.shape == (6, 5) and (a > 0).all()
    torch.testing.assert_close(a.sum(1), torch.ones(6))
    assert not torch.allclose(a[0], a[1])  # conditioned on the input


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [0, 3])
def test_one_hot_selection_is_that_kernels_conv(k, stride):
    m, x = _gconv(stride=stride, num_kernels=4), torch.randn(3, 8, 9, 9)
    one_hot = F.one_hot(torch.full((3,), k), 4).float()
    out = m(x, selection=one_hot)
    torch.testing.assert_close(out, _plain_conv(m, x, m.kernel(k)))
    assert not torch.allclose(out, _plain_conv(m, x, m.kernel((k + 1) % 4)))


def test_each_sample_gets_its_own_mixed_kernel():
    """The batch-as-groups conv equals, per sample i, the conv with Σ_k a_ik W_k."""
    m, x = _gconv(num_kernels=3), torch.randn(4, 8, 6, 6)
    with torch.no_grad():
        out, a = m(x), m.selection(x)
        for i in range(4):
            w = sum(a[i, k] * m.kernel(k) for k in range(3))
            torch.testing.assert_close(out[i:i + 1], _plain_conv(m, x[i:i + 1], w), rtol=1e-4, atol=1e-5)


def test_temperature_flattens_or_sharpens_the_selection():
    x = torch.randn(8, 8, 5, 5)
    entropy = []
    for tau in (0.1, 1.0, 10.0):
        m = _gconv(num_kernels=4)
        torch.manual_seed(0)
        torch.nn.init.normal_(m.route.weight, 0.0, 1.0)
        m.temperature = tau
        a = m.selection(x)
        entropy.append(-(a * a.log()).sum(1).mean().item())
    assert entropy[0] < entropy[1] < entropy[2] <= torch.log(torch.tensor(4.0)).item()


def test_bad_selection_shape_and_options_are_rejected():
    m = _gconv(num_kernels=4)
    with pytest.raises(ValueError, match="selection: expected shape"):
        m(torch.randn(2, 8, 5, 5), selection=torch.ones(2, 3) / 3)
    with pytest.raises(SpecError, match="temperature"):
        Arch(stem=Stem(), stages=(Stage("gconv", 1, 16, block_args={"temperature": 0.0}),))


def test_fvcore_counts_the_grouped_conv_mixing_and_routing():
    """MACs at batch 1 = the k×k conv + the kernel mix (K·|W|) + the routing fc (C_in·K)."""
    c_in, c_out, k, hw = 8, 12, 4, 10
    m = _gconv(c_in, c_out, 1, num_kernels=k)
    got = count_complexity(m, input_size=hw, in_chans=c_in)
    conv = c_out * c_in * 9 * hw * hw
    assert got["macs"] == conv + k * c_out * c_in * 9 + c_in * k
    assert got["params"] == k * c_out * c_in * 9 + c_in * k + k


@pytest.mark.parametrize("order", ["post", "pre"])
def test_block_shapes_and_orders(order):
    block = GConvBlock(16, 32, 2, layers=Layers(order=order), num_kernels=3).eval()
    out = block(torch.randn(2, 16, 12, 12))
    assert out.shape == (2, 32, 6, 6) and torch.isfinite(out).all()
    assert block.conv1.num_kernels == 3 and block.conv1.conv.stride == (2, 2)


def test_gconv_cifar_is_wrn_16_4_with_generative_convs():
    ref_arch, arch = get_preset("wrn-16-4"), get_preset("gconv-cifar")
    assert [(s.depth, s.width, s.stride, s.order) for s in arch.stages] == \
        [(s.depth, s.width, s.stride, s.order) for s in ref_arch.stages]
    ref = count_complexity(build_model(ref_arch, num_classes=10), input_size=32, in_chans=3)
    ours = count_complexity(build_model(arch, num_classes=10), input_size=32, in_chans=3)
    assert ref["macs"] < ours["macs"] < 1.1 * ref["macs"]  # same convs + the kernel mixing
