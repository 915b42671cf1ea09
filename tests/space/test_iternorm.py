"""IterNorm (Huang et al. CVPR 2019): Newton-iteration whitening, its convergence, groups and eval mode."""
from __future__ import annotations

import pytest
import torch

from space import Arch, Head, SpecError, Stage, Stem, build_model
from space.norms._whiten import iternorm_isqrt
from space.norms.iternorm import IterNorm

C = 8


def _data(n: int = 64, c: int = C, kappa_sqrt: float = 2.5) -> torch.Tensor:
    """(n, c, 4, 4) float64 features whose channels are correlated (covariance condition number ≈ kappa_sqrt²)."""
    q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
    mix = q @ torch.diag(torch.linspace(1.0, kappa_sqrt, c, dtype=torch.float64)) @ q.T
    x = torch.randn(n, c, 4, 4, dtype=torch.float64).permute(0, 2, 3, 1) @ mix.T
    return x.permute(0, 3, 1, 2).contiguous() + 3.0


def _cov(x: torch.Tensor) -> torch.Tensor:
    flat = x.transpose(0, 1).reshape(x.shape[1], -1)
    flat = flat - flat.mean(1, keepdim=True)
    return flat @ flat.T / flat.shape[1]


def _eigh_isqrt(sigma: torch.Tensor) -> torch.Tensor:
    evals, evecs = torch.linalg.eigh(sigma)
    return evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def test_whitened_covariance_approaches_identity_as_t_grows():
    x = _data()
    eye = torch.eye(C, dtype=torch.float64)
    dist = {}
    for t in (1, 3, 5, 10):
        y = IterNorm(C, iterations=t).double().train()(x)
        dist[t] = torch.linalg.matrix_norm(_cov(y) - eye).item()
    # measured: 2.1, 1.0, 0.12, 1.4e-05 (the last is ε's share: Σ carries +εI)
    assert dist[1] > dist[3] > dist[5] > dist[10]
    assert dist[1] > 1.0 and dist[10] < 1e-3


def test_newton_iterations_converge_to_the_eigendecomposition_inverse_sqrt():
    sigma = _cov(_data()) + 1e-5 * torch.eye(C, dtype=torch.float64)
    ref = _eigh_isqrt(sigma)
    rel = {t: ((iternorm_isqrt(sigma, t) - ref).abs().max() / ref.abs().max()).item() for t in (5, 10)}
    assert rel[5] > 1e-3  # T=5 is a deliberate approximation
    assert rel[10] < 1e-8


def test_module_whitening_matrix_is_the_newton_result_and_matches_eigh():
    x = _data()
    norm = IterNorm(C, iterations=10, momentum=1.0).double().train()
    norm(x)
    (wm,) = norm.whitening_matrices()
    sigma = _cov(x) + 1e-5 * torch.eye(C, dtype=torch.float64)
    torch.testing.assert_close(wm, iternorm_isqrt(sigma, 10))
    torch.testing.assert_close(wm, _eigh_isqrt(sigma), rtol=1e-7, atol=1e-9)


def test_eval_uses_running_mean_and_whitening_matrix():
    x = _data()
    norm = IterNorm(C, momentum=1.0).double()
    y_train = norm.train()(x)
    norm.eval()
    torch.testing.assert_close(norm(x), y_train)
    torch.testing.assert_close(norm(x[:2]), norm(x)[:2])  # per-sample in eval
    slow = IterNorm(C, momentum=0.1).double().train()
    slow(x)
    sigma = _cov(x) + 1e-5 * torch.eye(C, dtype=torch.float64)
    expect = 0.9 * torch.eye(C, dtype=torch.float64) + 0.1 * iternorm_isqrt(sigma, 5)
    torch.testing.assert_close(slow.whitening_matrices()[0], expect)
    torch.testing.assert_close(slow.whiten.running_mean, 0.1 * x.mean(dim=(0, 2, 3)))


def test_groups_of_m_channels_with_a_remainder_group():
    norm = IterNorm(12, group_size=5, iterations=10).double().train()
    assert [m.shape for m in norm.whitening_matrices()] == [(5, 5), (5, 5), (2, 2)]
    x = _data(c=12)
    cov = _cov(norm(x))
    for lo, hi in ((0, 5), (5, 10), (10, 12)):  # each group is whitened ...
        block = cov[lo:hi, lo:hi]
        torch.testing.assert_close(block, torch.eye(hi - lo, dtype=torch.float64), atol=1e-3, rtol=0)
    assert cov[0:5, 5:10].abs().max() > 0.05  # ... but groups are not decorrelated from each other
    assert len(IterNorm(8, group_size=64).whitening_matrices()) == 1  # width < m: one group of all channels


def test_affine_is_per_channel():
    norm = IterNorm(4).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0, -1.0, 5.0]))
    x = _data(c=4)
    plain = IterNorm(4).double()
    torch.testing.assert_close(norm(x), plain(x) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1))


def test_iterations_option_is_bounded():
    with pytest.raises(SpecError, match="iterations"):
        Arch(stem=Stem(), stages=(Stage("basic", 1, 16, norm="iternorm", norm_args={"iterations": 50}),))
    arch = Arch(stem=Stem(width=16, norm_act=True), head=Head(), input_size=16,
                stages=(Stage("basic", 1, 16, norm="iternorm", norm_args={"iterations": 3, "group_size": 8}),))
    model = build_model(arch, num_classes=3)
    norms = [m for m in model.modules() if isinstance(m, IterNorm)]
    assert norms and all(m.whiten.iterations == 3 and m.whiten.size == 8 for m in norms)
