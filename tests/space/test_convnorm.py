"""ConvNorm (Liu et al. NeurIPS 2021), data-driven reading: per-channel spectrum flattening."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from space import Arch, Head, Stage, Stem, build_model
from space.norms.convnorm import ConvNorm2d, resample_spectrum, weight_spectrum


def _power(x: torch.Tensor) -> torch.Tensor:
    """Per-channel batch power spectrum (C, H, W//2+1), orthonormal FFT."""
    return torch.fft.rfft2(x, norm="ortho").abs().square().mean(0)


def _coloured(n: int, c: int, size: int) -> torch.Tensor:
    """Spatially correlated features with a different spectrum per channel (and a non-zero mean)."""
    x = torch.randn(n, c, size, size)
    kernels = torch.randn(c, 1, 5, 5).abs() + torch.linspace(0, 2, c).view(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="circular"), kernels, groups=c) + 1.5


def test_output_power_spectrum_is_flat_per_channel():
    x = _coloured(16, 6, 8)
    p_in = _power(x)
    assert (p_in.amax(dim=(1, 2)) / p_in.amin(dim=(1, 2))).min() > 10  # strongly coloured input
    norm = ConvNorm2d(6, bn=False).train()
    p_out = _power(norm(x))
    torch.testing.assert_close(p_out, torch.ones_like(p_out), rtol=0, atol=1e-3)


def test_matches_the_papers_weight_based_preconditioner_for_white_input():
    """For white input to a (circular) conv, the data-driven P_c(ω) is Σ_c'|ŵ_cc'(ω)|², so the
    preconditioner P^(-1/2) is the paper's v̂ computed from the weight."""
    weight = torch.randn(4, 6, 3, 3)
    x = torch.randn(4000, 6, 6, 6)
    response = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), weight)
    v_paper = weight_spectrum(weight, (6, 6)).rsqrt()
    norm = ConvNorm2d(4, bn=False).train()
    norm(response)
    v_data = norm.running_power.rsqrt()  # the first batch initialises the running spectrum
    rel = ((v_data - v_paper).abs() / v_paper).max()
    assert rel < 0.06, rel
    # and the normalised conv operator has unit gain at every frequency, per output channel
    gain = _power(norm.precondition(response))
    torch.testing.assert_close(gain, torch.ones_like(gain), rtol=0, atol=1e-3)


def test_eval_uses_running_spectrum():
    x = _coloured(8, 4, 8)
    norm = ConvNorm2d(4, bn=False, momentum=0.3)
    y = norm.train()(x)
    norm.eval()
    torch.testing.assert_close(norm(x), y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm(x[:1]), norm(x)[:1])
    x2 = _coloured(8, 4, 8) * 2
    norm.train()(x2)
    torch.testing.assert_close(norm.running_power, 0.7 * _power(x) + 0.3 * _power(x2), rtol=1e-4, atol=1e-4)


def test_untrained_eval_is_identity_preconditioning():
    norm = ConvNorm2d(3, bn=False).eval()
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(norm(x), x / (1 + 1e-5) ** 0.5)


def test_running_spectrum_resamples_to_other_resolutions():
    weight = torch.randn(3, 5, 3, 3)
    moved = resample_spectrum(weight_spectrum(weight, (8, 8)), (8, 8), (12, 12))
    torch.testing.assert_close(moved, weight_spectrum(weight, (12, 12)), rtol=1e-4, atol=1e-4)
    norm = ConvNorm2d(3, bn=False)
    norm.train()(_coloured(4, 3, 8))
    out = norm.eval()(torch.randn(2, 3, 11, 11))
    assert out.shape == (2, 3, 11, 11) and torch.isfinite(out).all()


def test_state_dict_round_trip_restores_running_spectrum():
    norm = ConvNorm2d(4)
    norm.train()(_coloured(4, 4, 8))
    fresh = ConvNorm2d(4)
    fresh.load_state_dict(norm.state_dict())
    x = _coloured(2, 4, 8)
    torch.testing.assert_close(fresh.eval()(x), norm.eval()(x))


def test_affine_conv_starts_as_identity_after_build():
    arch = Arch(stem=Stem(width=8, norm_act=True), head=Head(), input_size=8,
                stages=(Stage("basic", 1, 8, norm="convnorm", norm_args={"kernel": 5}),))
    model = build_model(arch, num_classes=2)
    norms = [m for m in model.modules() if isinstance(m, ConvNorm2d)]
    assert norms and all(m.affine.weight.shape == (8, 1, 5, 5) for m in norms)
    delta = torch.zeros(8, 1, 5, 5)
    delta[:, :, 2, 2] = 1
    for m in norms:  # the builder's He init of every Conv2d was undone by reset_nas_parameters
        torch.testing.assert_close(m.affine.weight.detach(), delta)
        assert isinstance(m.bn, torch.nn.BatchNorm2d)
