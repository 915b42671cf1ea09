"""ConvNorm (Liu et al. NeurIPS 2021): the module's FFT computation against explicit circulant-matrix algebra."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from space import BLOCKS, Arch, Head, SpecError, Stage, Stem, build_model
from space.norms.convnorm import ConvNormAffine, PrecondConv2d


def _circulant(kernel: np.ndarray, grid: tuple[int, int], dilation: int) -> np.ndarray:
    """Matrix of the full linear cross-correlation (as F.conv2d) of a k×k ``kernel``, written as a circular one on
    ``grid`` acting on the input placed at the grid's top-left corner: A[(i,j),(u,v)] = Σ w[a,b] [u ≡ i+da−e+1]…"""
    hf, wf = grid
    k = kernel.shape[0]
    e = dilation * (k - 1) + 1
    a_mat = np.zeros((hf * wf, hf * wf))
    for i in range(hf):
        for j in range(wf):
            for a in range(k):
                for b in range(k):
                    u, v = (i + dilation * a - e + 1) % hf, (j + dilation * b - e + 1) % wf
                    a_mat[i * wf + j, u * wf + v] += kernel[a, b]
    return a_mat


def _isqrt(m: np.ndarray, eps: float) -> np.ndarray:
    lam, u = np.linalg.eigh(m)
    return (u / np.sqrt(lam + eps)) @ u.T


def _dense(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped weight (C_out, C_in/g, k, k) as a dense (C_out, C_in, k, k) one with zeros across groups."""
    co, cig = weight.shape[:2]
    dense = np.zeros((co, cig * groups) + weight.shape[2:])
    per = co // groups
    for c in range(co):
        g = c // per
        dense[c, g * cig:(g + 1) * cig] = weight[c]
    return dense


def _preconditioners(weight: np.ndarray, grid, dilation: int, groups: int, eps: float) -> list[np.ndarray]:
    """(Σ_c' A_cc' A_cc'ᵀ + εI)^(−1/2) per output channel c, by eigendecomposition."""
    dense = _dense(weight, groups)
    out = []
    for c in range(dense.shape[0]):
        blocks = [_circulant(dense[c, ci], grid, dilation) for ci in range(dense.shape[1])]
        out.append(_isqrt(sum(b @ b.T for b in blocks), eps))
    return out


def _reference(x: np.ndarray, weight: np.ndarray, *, stride: int, dilation: int, groups: int, eps: float,
               precond: list[np.ndarray] | None = None) -> np.ndarray:
    """Preconditioned conv by matrices: y_c = P_c Σ_c' A_cc' x̃_c' on the full grid, cropped to 'same', strided."""
    n, _, h, w = x.shape
    k = weight.shape[-1]
    e = dilation * (k - 1) + 1
    grid = (h + e - 1, w + e - 1)
    dense = _dense(weight, groups)
    precond = precond if precond is not None else _preconditioners(weight, grid, dilation, groups, eps)
    pad = (e - 1) // 2
    start = e - 1 - pad
    out = np.zeros((n, dense.shape[0], h, w))
    for s in range(n):
        placed = np.zeros((dense.shape[1],) + grid)
        placed[:, :h, :w] = x[s]
        for c in range(dense.shape[0]):
            y = sum(_circulant(dense[c, ci], grid, dilation) @ placed[ci].ravel() for ci in range(dense.shape[1]))
            full = (precond[c] @ y).reshape(grid)
            out[s, c] = full[start:start + h, start:start + w]
    return out[..., ::stride, ::stride]


CASES = [dict(kernel=3, stride=1, dilation=1, groups=1), dict(kernel=3, stride=2, dilation=1, groups=1),
         dict(kernel=1, stride=1, dilation=1, groups=1), dict(kernel=1, stride=2, dilation=1, groups=1),
         dict(kernel=3, stride=1, dilation=2, groups=1), dict(kernel=3, stride=1, dilation=1, groups=2),
         dict(kernel=5, stride=1, dilation=1, groups=1)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "k{kernel}s{stride}d{dilation}g{groups}".format(**c))
def test_fft_preconditioner_equals_circulant_matrix_algebra(case):
    torch.manual_seed(0)
    conv = PrecondConv2d(4, 4, case["kernel"], case["stride"], groups=case["groups"],
                         dilation=case["dilation"]).double().train()
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    got = conv(x).detach().numpy()
    expect = _reference(x.numpy(), conv.weight.detach().numpy(), stride=case["stride"], dilation=case["dilation"],
                        groups=case["groups"], eps=conv.eps)
    assert got.shape == expect.shape == torch.nn.functional.conv2d(x, conv.weight, None, case["stride"],
                                                                  conv.padding, conv.dilation, case["groups"]).shape
    np.testing.assert_allclose(got, expect, rtol=1e-8, atol=1e-9)


def test_channelwise_isometry_on_the_full_grid():
    """The paper's property: each output channel's preconditioned operator P_c A_c has orthonormal rows."""
    torch.manual_seed(1)
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64).numpy()
    grid = (6, 7)
    for c, p in enumerate(_preconditioners(weight, grid, 1, 1, 0.0)):
        a_c = np.hstack([_circulant(weight[c, ci], grid, 1) for ci in range(2)])
        np.testing.assert_allclose((p @ a_c) @ (p @ a_c).T, np.eye(a_c.shape[0]), atol=1e-9)


def test_eval_uses_the_running_average_of_the_preconditioner():
    torch.manual_seed(2)
    conv = PrecondConv2d(3, 3, 3, 1, rampdown=4).double().train()
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    grid = (7, 7)
    w1 = conv.weight.detach().clone()
    conv(x)  # batch 1 initialises the running average
    with torch.no_grad():
        conv.weight.add_(0.5 * torch.randn_like(conv.weight))
    w2 = conv.weight.detach().clone()
    conv(x)  # batch 2: factor ½(1 + cos(π·2/4)) = 0.5
    with torch.no_grad():
        conv.weight.mul_(3.0)  # eval must not follow the current weight
    f = max(0.5 * (math.cos(math.pi * 2 / 4) + 1), 0.01)
    p1 = _preconditioners(w1.numpy(), grid, 1, 1, conv.eps)
    p2 = _preconditioners(w2.numpy(), grid, 1, 1, conv.eps)
    mixed = [(1 - f) * a + f * b for a, b in zip(p1, p2)]
    expect = _reference(x.numpy(), conv.weight.detach().numpy(), stride=1, dilation=1, groups=1, eps=conv.eps,
                        precond=mixed)
    np.testing.assert_allclose(conv.eval()(x).detach().numpy(), expect, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(conv(x[:1]), conv(x)[:1])  # no batch dependence in eval


def test_untrained_eval_and_other_resolutions_use_the_current_weight():
    torch.manual_seed(3)
    conv = PrecondConv2d(2, 3, 3, 1).double().eval()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    expect = _reference(x.numpy(), conv.weight.detach().numpy(), stride=1, dilation=1, groups=1, eps=conv.eps)
    np.testing.assert_allclose(conv(x).detach().numpy(), expect, rtol=1e-8, atol=1e-9)
    conv.train()(torch.randn(2, 2, 6, 6, dtype=torch.float64))
    np.testing.assert_allclose(conv.eval()(x).detach().numpy(), expect, rtol=1e-8, atol=1e-9)


def test_no_gradient_flows_through_the_preconditioner():
    """v̂ is computed from the detached weight: the weight's gradient is that of the conv times a constant P."""
    torch.manual_seed(4)
    conv = PrecondConv2d(2, 2, 3, 1).double().train()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    g = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    (conv(x) * g).sum().backward()
    precond = _preconditioners(conv.weight.detach().numpy(), (6, 6), 1, 1, conv.eps)
    numeric = np.zeros(conv.weight.shape)
    for idx in np.ndindex(*conv.weight.shape):  # the map is linear in w for a fixed P
        unit = np.zeros(conv.weight.shape)
        unit[idx] = 1.0
        numeric[idx] = (_reference(x.numpy(), unit, stride=1, dilation=1, groups=1, eps=0.0, precond=precond)
                        * g.numpy()).sum()
    np.testing.assert_allclose(conv.weight.grad.numpy(), numeric, rtol=1e-7, atol=1e-9)


def test_state_dict_round_trip_restores_the_running_preconditioner():
    conv = PrecondConv2d(3, 4, 3, 2)
    conv.train()(torch.randn(2, 3, 8, 8))
    fresh = PrecondConv2d(3, 4, 3, 2)
    fresh.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(fresh.eval()(x), conv.eval()(x))
    assert int(fresh.num_batches_tracked) == 1


def _arch(block: str = "basic", order: str = "post") -> Arch:
    kw = dict(norm="convnorm", order=order, **BLOCKS.entry(block).meta.get("example", {}))
    return Arch(stem=Stem(width=16, norm_act=order == "post"), head=Head(), input_size=8,
                stages=(Stage(block, 1, 16, **kw), Stage(block, 1, 32, stride=2, **kw)))


@pytest.mark.parametrize("block", ["basic", "bottleneck", "conv", "mgic", "sk", "sk_basic"])
def test_every_norm_follows_its_preconditioned_conv(block):
    model = build_model(_arch(block), num_classes=2)
    convs = [m for m in model.modules() if isinstance(m, PrecondConv2d)]
    norms = [m for m in model.modules() if isinstance(m, ConvNormAffine)]
    assert convs and len(convs) == len(norms)
    for m in norms:  # the authors' affine conv: the conv's kernel size, PyTorch's default init (|w| ≤ 1/√fan_in)
        k = m.affine.kernel_size[0]
        assert m.affine.weight.abs().max() <= 1 / k
    assert all(n.affine.kernel_size == c.kernel_size for n, c in zip(norms, convs) if block == "basic")
    model(torch.randn(2, 3, 8, 8)).sum().backward()


def test_orders_and_blocks_without_a_preceding_conv_are_refused():
    with pytest.raises(SpecError, match=r"^stages\[0\]\.norm: convnorm .* order post, got order 'pre'$"):
        _arch(order="pre")
    with pytest.raises(SpecError, match=r"^stages\[0\]\.norm: .*block 'ghost'"):
        _arch(block="ghost")
