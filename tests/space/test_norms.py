"""Properties of the normaliser choices: BN-init revisited, GN, GN with batch statistics, IFT."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from space import NORMS, Arch, Head, SpecError, Stage, Stem, build_model
from space.norms import bn_revisited as bn_revisited_module
from space.norms.bgn import BatchGroupNorm2d
from space.norms.bn_revisited import RevisitedBatchNorm2d, bn_revisited_param_groups
from space.norms.gn_batch import GNPlus2d
from space.norms.ift import InvarianceFeatureTransform, PatchWhitening, local_standardize


def _arch(norm: str, width: int = 16, order: str = "post", **norm_args) -> Arch:
    stages = (Stage("basic", 1, width, norm=norm, order=order, norm_args=norm_args),
              Stage("basic", 1, 2 * width, stride=2, norm=norm, order=order, norm_args=norm_args))
    return Arch(stem=Stem(width=16, norm_act=True), stages=stages, head=Head(), input_size=16)


def _corr_offdiag(y: torch.Tensor) -> float:
    """Largest |correlation| between two different channels of (N, C, H, W) over N·H·W samples."""
    flat = y.transpose(0, 1).reshape(y.shape[1], -1)
    flat = flat - flat.mean(1, keepdim=True)
    cov = flat @ flat.T / flat.shape[1]
    d = cov.diagonal().sqrt()
    return ((cov / d[:, None] / d[None]) - torch.eye(len(d))).abs().max().item()


def test_registered():
    for name in ("bn_revisited", "gn", "gn_batch", "bgn", "iternorm", "convnorm", "ift"):
        assert name in NORMS


def test_docstring_examples_run():
    result = doctest.testmod(bn_revisited_module)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- BN-init revisited


def test_bn_revisited_gamma_is_0_1_after_build():
    model = build_model(_arch("bn_revisited"), num_classes=10)
    bns = [m for m in model.modules() if isinstance(m, RevisitedBatchNorm2d)]
    assert len(bns) >= 5  # stem + 2 per block + projection shortcut
    for bn in bns:
        assert torch.all(bn.weight == 0.1) and torch.all(bn.bias == 0)


def test_bn_revisited_options_reach_the_module_and_are_checked():
    model = build_model(_arch("bn_revisited", gamma_init=0.25, gamma_lr_scale=0.05), num_classes=10)
    bn = next(m for m in model.modules() if isinstance(m, RevisitedBatchNorm2d))
    assert torch.all(bn.weight == 0.25) and bn.nas_param_groups()[0]["lr_scale"] == 0.05
    with pytest.raises(SpecError, match="gamma_init"):
        _arch("bn_revisited", gamma_init=-1.0)


def test_bn_revisited_param_groups_cover_every_parameter_once():
    model = build_model(_arch("bn_revisited"), num_classes=10)
    lr, wd = 0.1, 5e-4
    groups = bn_revisited_param_groups(model, lr=lr, weight_decay=wd)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    gammas = {id(m.weight) for m in model.modules() if isinstance(m, RevisitedBatchNorm2d)}
    gamma_group = [g for g in groups if {id(p) for p in g["params"]} == gammas]
    assert len(gamma_group) == 1
    assert gamma_group[0]["lr"] == pytest.approx(lr / 100) and gamma_group[0]["weight_decay"] == 0.0
    by_id = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        g = by_id[id(p)]
        if id(p) in gammas:
            continue
        if p.dim() > 1:  # conv and linear weights
            assert g["weight_decay"] == wd and g["lr"] == lr, name
        else:  # biases, BN shifts
            assert g["weight_decay"] == 0.0 and g["lr"] == lr, name


def test_bn_revisited_gamma_moves_at_a_hundredth_of_the_lr():
    model = build_model(_arch("bn_revisited"), num_classes=10)
    opt = torch.optim.SGD(bn_revisited_param_groups(model, lr=0.5, weight_decay=0.1), lr=0.5)
    bn = next(m for m in model.modules() if isinstance(m, RevisitedBatchNorm2d))
    model(torch.randn(4, 3, 16, 16)).logsumexp(1).mean().backward()
    before, grad = bn.weight.detach().clone(), bn.weight.grad.clone()
    opt.step()
    assert grad.abs().max() > 0
    torch.testing.assert_close(bn.weight.detach(), before - 0.005 * grad)  # lr/100, no weight decay


# --------------------------------------------------------------------------- GN


def test_gn_uses_min_groups_rule_and_matches_group_norm():
    model = build_model(_arch("gn"), num_classes=10)
    gns = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert {(m.num_channels, m.num_groups) for m in gns} == {(16, 16), (32, 32)}
    norm = NORMS.get("gn")(64, groups=8)
    x = torch.randn(2, 64, 5, 5) * 3 + 2
    y = norm(x)
    torch.testing.assert_close(y, F.group_norm(x, 8, eps=1e-5))
    grouped = y.reshape(2, 8, -1)
    assert grouped.mean(-1).abs().max() < 1e-5 and (grouped.var(-1, unbiased=False) - 1).abs().max() < 1e-3


@pytest.mark.parametrize("norm", ["gn", "gn_batch", "bgn"])
def test_group_norms_reject_indivisible_width(norm):
    with pytest.raises(SpecError, match=f"{norm}: width 48 not divisible by groups 32"):
        _arch(norm, width=48)
    with pytest.raises(SpecError, match="width 20 not divisible by groups 8"):
        _arch(norm, width=20, groups=8)
    with pytest.raises(ValueError, match="width 48 not divisible"):
        NORMS.get(norm)(48)  # widths the stage check cannot see (stem, previous stage) fail at build


# --------------------------------------------------------------------------- Batch Group Normalization


def test_bgn_train_statistics_are_per_group_over_the_batch():
    norm = BatchGroupNorm2d(32, groups=4)
    x = torch.randn(6, 32, 5, 5) * torch.linspace(0.5, 4, 32).view(1, -1, 1, 1) + 3
    y = norm.train()(x).reshape(6, 4, 8, 5, 5)
    mean, var = y.mean(dim=(0, 2, 3, 4)), y.var(dim=(0, 2, 3, 4), unbiased=False)
    assert mean.abs().max() < 1e-5 and (var - 1).abs().max() < 1e-3
    per_sample = y.var(dim=(2, 3, 4), unbiased=False)  # not per-sample standardised (that would be GN)
    assert (per_sample - 1).abs().max() > 1e-2


def test_bgn_with_batch_one_is_gn():
    norm = BatchGroupNorm2d(32, groups=8).train()
    x = torch.randn(1, 32, 6, 6) * 2 - 1
    torch.testing.assert_close(norm(x), F.group_norm(x, 8, eps=1e-5), rtol=1e-5, atol=1e-5)


def test_bgn_eval_uses_running_statistics():
    norm = BatchGroupNorm2d(16, groups=4, momentum=0.1)
    x = torch.randn(8, 16, 4, 4) + 2
    norm.train()(x)
    groups = x.reshape(8, 4, 4, 4, 4)
    torch.testing.assert_close(norm.running_mean, 0.1 * groups.mean(dim=(0, 2, 3, 4)))
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * groups.var(dim=(0, 2, 3, 4), unbiased=True))
    norm.eval()
    y = norm(x)
    expect = (groups - norm.running_mean.view(1, 4, 1, 1, 1)) / (norm.running_var.view(1, 4, 1, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(y, expect.reshape_as(x))
    torch.testing.assert_close(norm(x[:1]), y[:1])  # no batch dependence in eval


# --------------------------------------------------------------------------- GN improved with batch statistics


def _gn_plus_numpy(x: np.ndarray, groups: int, lam: float, bn_mean=None, bn_var=None, eps: float = 1e-5):
    """Gunawan et al.'s layer from its equations: z = GN(x); λ·z + (1 − λ)·(z − μ_c)/√(σ²_c + ε)."""
    n, c, h, w = x.shape
    g = x.reshape(n, groups, -1)
    z = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(n, c, h, w)
    mu = z.mean(axis=(0, 2, 3), keepdims=True) if bn_mean is None else bn_mean.reshape(1, c, 1, 1)
    var = z.var(axis=(0, 2, 3), keepdims=True) if bn_var is None else bn_var.reshape(1, c, 1, 1)
    return lam * z + (1 - lam) * (z - mu) / np.sqrt(var + eps), z


def test_gn_batch_is_gn_then_bn_mixed_by_a_sigmoid_weight():
    norm = GNPlus2d(32, groups=4).train()
    x = torch.randn(6, 32, 5, 5) * torch.linspace(0.5, 4, 32).view(1, -1, 1, 1) + torch.randn(6, 1, 1, 1) * 3
    y = norm(x)
    lam = 1 / (1 + np.exp(-1.0))  # sigmoid of the initial p = 1
    expect, z = _gn_plus_numpy(x.double().numpy(), 4, lam)
    np.testing.assert_allclose(y.detach().double().numpy(), expect, atol=1e-4)
    n_hw = 6 * 25  # running statistics of the BN part: of GN's output, unbiased variance
    np.testing.assert_allclose(norm.bn.running_mean.numpy(), 0.1 * z.mean(axis=(0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(norm.bn.running_var.numpy(), 0.9 + 0.1 * z.var(axis=(0, 2, 3)) * n_hw / (n_hw - 1),
                               atol=1e-5)
    norm.eval()
    y_eval = norm(x)
    expect_eval, _ = _gn_plus_numpy(x.double().numpy(), 4, lam, norm.bn.running_mean.double().numpy(),
                                    norm.bn.running_var.double().numpy())
    np.testing.assert_allclose(y_eval.detach().double().numpy(), expect_eval, atol=1e-4)
    torch.testing.assert_close(norm(x[:1]), y_eval[:1])  # no batch dependence in eval
    y.sum().backward()
    assert norm.mix.grad is not None and norm.mix.grad.abs().item() > 0  # λ is learned


# --------------------------------------------------------------------------- IFT


def _correlated(n: int, c: int, h: int, w: int) -> torch.Tensor:
    mix = torch.eye(c) + 0.5 * torch.randn(c, c) / c ** 0.5
    return (torch.randn(n, c, h, w).permute(0, 2, 3, 1) @ mix.T).permute(0, 3, 1, 2).contiguous()


def test_ift_invariant_to_per_sample_affine_intensity_changes():
    x = _correlated(8, 16, 8, 8)
    a = torch.rand(8, 1, 1, 1) * 3 + 0.3
    b = torch.randn(8, 1, 1, 1) * 5
    ift = InvarianceFeatureTransform(16).train()
    y = ift(x)
    torch.testing.assert_close(ift(a * x + b), y, rtol=1e-3, atol=1e-3)
    ift.eval()
    torch.testing.assert_close(ift(a * x + b), ift(x), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(ift(x * torch.linspace(0.2, 3, 16).view(1, -1, 1, 1)), ift(x), atol=1e-2)


def test_ift_invariance_is_local():
    """Different intensity changes on the two image halves leave every pixel whose footprint (the 3×3
    patch of 3×3 standardisation windows) lies inside one half unchanged (eval mode: the whitening is fixed)."""
    ift = InvarianceFeatureTransform(16)
    ift.train()(_correlated(8, 16, 8, 8))
    ift.eval()
    x = _correlated(2, 16, 8, 8)
    gain = torch.ones(1, 1, 1, 8)
    gain[..., :4], gain[..., 4:] = 2.5, 0.4
    shift = torch.zeros(1, 1, 1, 8)
    shift[..., :4], shift[..., 4:] = -3.0, 7.0
    y, y_changed = ift(x), ift(gain * x + shift)
    inside = [0, 1, 6, 7]  # columns whose 5×5 footprint (3×3 patch of 3×3 windows) stays in one half
    torch.testing.assert_close(y_changed[..., inside], y[..., inside], rtol=1e-3, atol=1e-3)
    assert (y_changed[..., [2, 3, 4, 5]] - y[..., [2, 3, 4, 5]]).abs().max() > 0.1


def test_ift_local_standardisation_statistics():
    x = torch.randn(2, 4, 6, 6) * 4 + 1
    z = local_standardize(x, 3, 1e-5)
    centre = x[:, :, 1:4, 1:4]  # the window around pixel (2, 2)
    mean, var = centre.mean(dim=(1, 2, 3)), centre.var(dim=(1, 2, 3), unbiased=False)
    expect = (x[:, :, 2, 2] - mean[:, None]) / (var[:, None] + 1e-5).sqrt()
    torch.testing.assert_close(z[:, :, 2, 2], expect)


def test_ift_decorrelates_channels_in_train_mode():
    x = _correlated(32, 16, 8, 8)
    assert _corr_offdiag(x) > 0.3
    # network deconvolution's 5 Newton–Schulz steps only partly converge on the 144-dim patch covariance
    y = InvarianceFeatureTransform(16).train()(x)
    assert _corr_offdiag(y) < 0.5 * _corr_offdiag(x)
    y10 = InvarianceFeatureTransform(16, iterations=10).train()(x)
    assert _corr_offdiag(y10) < 0.02


def test_ift_eval_uses_running_statistics_from_first_batch():
    ift = InvarianceFeatureTransform(16, group_size=16)
    x = _correlated(16, 16, 6, 6)
    y = ift.train()(x)
    ift.eval()  # warm start: the first batch's statistics are the running ones
    torch.testing.assert_close(ift(x), y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ift(x[:3]), ift(x)[:3])


def _np_patches(x: np.ndarray, patch: int, block: int) -> np.ndarray:
    """im2col by slicing a zero-padded array: rows (sample, group, pixel), columns (channel, dy, dx)."""
    n, c, h, w = x.shape
    r = patch // 2
    padded = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)))
    rows = []
    for s in range(n):
        for g in range(c // block):
            for i in range(h):
                for j in range(w):
                    rows.append(padded[s, g * block:(g + 1) * block, i:i + patch, j:j + patch].ravel())
    return np.array(rows)


def _np_isqrt(m: np.ndarray) -> np.ndarray:
    lam, u = np.linalg.eigh(m)
    return (u / np.sqrt(lam)) @ u.T


def _spatially_correlated(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = _correlated(n, c, size + 2, size + 2)
    blur = torch.rand(c, 1, 3, 3, generator=g) + 0.5
    return F.conv2d(x, blur, groups=c)[..., :size, :size].double()


def test_ift_whitened_im2col_patches_have_identity_covariance():
    x = _spatially_correlated(6, 8, 6)
    whiten = PatchWhitening(8, patch=3, group_size=4, iterations=30, eps=1e-6, momentum=0.1).double().train()
    y = whiten(x).detach().numpy()
    rows = _np_patches(x.numpy(), 3, 4)
    cov_in = np.cov(rows.T, bias=True)
    assert np.abs(cov_in - np.diag(np.diag(cov_in))).max() > 0.3  # strongly correlated patches
    deconv, mean = whiten.running_deconv.numpy(), whiten.running_mean.numpy()
    np.testing.assert_allclose(mean, rows.mean(0), atol=1e-12)
    white = (rows - mean) @ deconv.T
    np.testing.assert_allclose(np.cov(white.T, bias=True), np.eye(36), atol=2e-3)
    # the output is each whitened patch's centre: channel i of group g at pixel p is white[(n, g, p), i·9 + 4]
    centre = white[:, [i * 9 + 4 for i in range(4)]].reshape(6, 2, 6, 6, 4).transpose(0, 1, 4, 2, 3)
    np.testing.assert_allclose(y, centre.reshape(6, 8, 6, 6), atol=1e-9)


def test_ift_patch_whitening_eval_uses_running_statistics():
    x1, x2 = _spatially_correlated(4, 4, 5, seed=1), 2.0 * _spatially_correlated(4, 4, 5, seed=2) + 1.0
    whiten = PatchWhitening(4, patch=3, group_size=4, iterations=30, eps=1e-3, momentum=0.3).double().train()
    whiten(x1)
    whiten(x2)
    stats = []
    for x in (x1, x2):
        rows = _np_patches(x.numpy(), 3, 4)
        stats.append((rows.mean(0), _np_isqrt(np.cov(rows.T, bias=True) + 1e-3 * np.eye(36))))
    mean = 0.7 * stats[0][0] + 0.3 * stats[1][0]  # the first batch initialises, then momentum 0.3
    deconv = 0.7 * stats[0][1] + 0.3 * stats[1][1]
    np.testing.assert_allclose(whiten.running_deconv.numpy(), deconv, atol=1e-6)
    x = _spatially_correlated(2, 4, 5, seed=3)
    white = (_np_patches(x.numpy(), 3, 4) - mean) @ deconv.T
    expect = white[:, [i * 9 + 4 for i in range(4)]].reshape(2, 5, 5, 4).transpose(0, 3, 1, 2)
    whiten.eval()
    np.testing.assert_allclose(whiten(x).detach().numpy(), expect, atol=1e-6)
    torch.testing.assert_close(whiten(x[:1]), whiten(x)[:1])


def test_ift_whitened_patches_are_gl_n_invariant():
    """A basis change G of the channels (P ↦ (G ⊗ I) P) leaves the Gram matrix of the whitened patches unchanged."""
    x = _spatially_correlated(2, 4, 6, seed=4)
    g = torch.eye(4, dtype=torch.float64) + 0.8 * torch.randn(4, 4, generator=torch.Generator().manual_seed(5),
                                                                dtype=torch.float64)
    xg = torch.einsum("ij,njhw->nihw", g, x)
    grams = []
    for inp in (x, xg):
        whiten = PatchWhitening(4, patch=3, group_size=4, iterations=40, eps=1e-9, momentum=0.1).double().train()
        mean, deconv = whiten.statistics(inp)
        white = (_np_patches(inp.numpy(), 3, 4) - mean.detach().numpy()) @ deconv.detach().numpy().T
        grams.append(white @ white.T)
    assert np.abs(grams[0]).max() > 1
    np.testing.assert_allclose(grams[1], grams[0], atol=1e-4)
