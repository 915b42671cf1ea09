"""ConvNorm: convolutional normalisation in the Fourier domain (Liu, Chen, Qu, You & Zhu,
"Convolutional Normalization: Improving Deep Convolutional Network Robustness and Training",
NeurIPS 2021), data-driven reading.

The paper's layer follows a conv with weight w (C_out × C_in × k × k). Per output channel c it
forms, at every frequency ω of the (circular) feature grid,

    v̂_c(ω) = ( Σ_{c'} |ŵ_{c,c'}(ω)|² )^(−1/2),

multiplies the conv response's spectrum by it (a per-channel deconvolution that makes each
channel's operator an isometry: flat unit frequency response), then applies a learned depthwise
k×k conv as the "affine" part and, by default, BN. The official code computes v̂ from the
(detached) weight and keeps a running average of it for eval.

A normaliser here is built from ``num_features`` alone and never sees the preceding conv's weight,
so this module uses the data-driven form of the same preconditioner: with a white input
(E x̂ x̂ᴴ = I per frequency, orthonormal FFT) the conv response has, per channel, exactly the power
spectrum P_c(ω) = E|ŷ_c(ω)|² = Σ_{c'} |ŵ_{c,c'}(ω)|², so v̂_c = P_c^(−1/2). This module estimates

    P_c(ω) = mean over the batch of |x̂_{n,c}(ω)|²   (x̂ = rfft2(x, norm="ortho")),
    y = irfft2( x̂ · (P + ε)^(−1/2) ),   then depthwise k×k conv (with bias), then BN (option ``bn``),

so the per-channel power spectrum of y is flat (≡ 1) on the batch it was computed from; for a
white input to a conv it coincides with the paper's weight-based v̂ (``weight_spectrum``).
Differences from the paper, all documented choices: the statistics are the input's (so, like
BN's, they are differentiated through, where the paper detaches its weight-derived v̂); the FFT
is circular on the feature grid (the paper zero-pads the conv to the full linear size and
crops); the depthwise affine conv starts as the identity (a centred delta, bias 0) so that the
initial layer is the pure preconditioner. Eval uses a running P (exponential average with
``momentum``; the first batch, or a change of training resolution, initialises it); at another
resolution the running spectrum is resampled by zero-padding or cropping its autocorrelation
(P's inverse FFT) to the new grid.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import OptionSpec, register_norm


def weight_spectrum(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The paper's Σ_{c'} |ŵ_{c,c'}(ω)|² for a conv weight (C_out, C_in, k, k) on a ``size`` grid.

    Returns (C_out, H, W//2+1), the layout of ``torch.fft.rfft2``.
    """
    h, w = size
    padded = F.pad(weight, (0, w - weight.shape[-1], 0, h - weight.shape[-2]))
    return torch.fft.rfft2(padded).abs().square().sum(1)


def resample_spectrum(power: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """A power spectrum (C, h, w//2+1) of an ``grid`` = (h, w) feature grid moved to a ``size`` grid.

    With the orthonormal FFT, P(ω) = Σ_δ R(δ) e^(−iωδ) for the autocorrelation R of a stationary
    feature, so R = irfft2(P) (per lag, independent of the grid) is cropped or zero-padded around
    lag 0 to the new grid and transformed back.
    """
    h0, w0 = grid
    auto = torch.fft.fftshift(torch.fft.irfft2(power, s=(h0, w0)), dim=(-2, -1))
    h, w = size
    out = auto.new_zeros(power.shape[0], h, w)
    ch, cw = min(h, h0), min(w, w0)
    sy0, sx0 = h0 // 2 - ch // 2, w0 // 2 - cw // 2
    dy0, dx0 = h // 2 - ch // 2, w // 2 - cw // 2
    out[:, dy0:dy0 + ch, dx0:dx0 + cw] = auto[:, sy0:sy0 + ch, sx0:sx0 + cw]
    return torch.fft.rfft2(torch.fft.ifftshift(out, dim=(-2, -1))).real.clamp_min(0.0)


class ConvNorm2d(nn.Module):
    """Per-channel Fourier-domain whitening of the power spectrum, learned depthwise affine conv, optional BN."""

    def __init__(self, num_features: int, *, kernel: int = 3, bn: bool = True, eps: float = 1e-5,
                 momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.kernel, self.eps, self.momentum = num_features, kernel, eps, momentum
        self.affine = nn.Conv2d(num_features, num_features, kernel, padding=kernel // 2, groups=num_features,
                                bias=True)
        self.bn = nn.BatchNorm2d(num_features) if bn else nn.Identity()
        self.register_buffer("running_power", torch.empty(num_features, 0, 0))
        self.register_buffer("running_grid", torch.zeros(2, dtype=torch.long))  # (H, W) of running_power
        self.reset_nas_parameters()

    def reset_nas_parameters(self) -> None:
        """Depthwise affine conv = identity (centred delta kernel, zero bias)."""
        with torch.no_grad():
            self.affine.weight.zero_()
            self.affine.weight[:, 0, self.kernel // 2, self.kernel // 2] = 1.0
            self.affine.bias.zero_()

    def extra_repr(self) -> str:
        return f"{self.num_features}, kernel={self.kernel}, eps={self.eps}, momentum={self.momentum}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "running_power")
        if saved is not None and saved.shape != self.running_power.shape:
            self.running_power = torch.empty_like(saved, device=self.running_power.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _eval_power(self, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        if self.running_power.numel() == 0:  # never trained: flat unit spectrum, as BN's running_var = 1
            return like.new_ones(self.num_features, size[0], size[1] // 2 + 1)
        grid = (int(self.running_grid[0]), int(self.running_grid[1]))
        return self.running_power if grid == tuple(size) else resample_spectrum(self.running_power, grid, size)

    def precondition(self, x: torch.Tensor) -> torch.Tensor:
        """x ↦ irfft2(x̂ · (P + ε)^(−1/2)): the ConvNorm step before the affine conv and BN."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x, norm="ortho")
        if self.training:
            power = spec.real.square().add(spec.imag.square()).mean(0)
            with torch.no_grad():
                if self.running_power.shape != power.shape or tuple(self.running_grid.tolist()) != (h, w):
                    self.running_power = power.detach().clone()
                    self.running_grid.copy_(torch.tensor([h, w]))
                else:
                    self.running_power.mul_(1 - self.momentum).add_(self.momentum * power.detach())
        else:
            power = self._eval_power((h, w), x)
        return torch.fft.irfft2(spec * torch.rsqrt(power + self.eps), s=(h, w), norm="ortho")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.affine(self.precondition(x)))


def _convnorm(num_features: int, *, kernel: int = 3, bn: bool = True, eps: float = 1e-5,
              momentum: float = 0.1) -> nn.Module:
    """ConvNorm (Liu et al. NeurIPS 2021), data-driven: per-channel spectrum flattening, depthwise affine, BN."""
    return ConvNorm2d(num_features, kernel=kernel, bn=bn, eps=eps, momentum=momentum)


register_norm("convnorm", _convnorm, options={
    "kernel": OptionSpec(int, 3, "depthwise affine kernel size", lambda v: v >= 1 and v % 2 == 1, "odd, >= 1"),
    "bn": OptionSpec(bool, True, "follow with BatchNorm (the paper's default)"),
    "eps": OptionSpec(float, 1e-5, "ε added to the power spectrum", lambda v: v > 0, "> 0"),
    "momentum": OptionSpec(float, 0.1, "running-spectrum momentum", lambda v: 0 < v <= 1, "in (0, 1]")},
    doc="ConvNorm (Liu et al. 2021): per-channel Fourier-domain preconditioning to a flat spectrum, "
        "depthwise affine conv, BN")
