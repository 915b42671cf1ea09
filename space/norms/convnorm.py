"""ConvNorm: convolutional normalisation in the Fourier domain (Liu, Li, Zhai, You, Zhu, Fernandez-Granda & Qu,
"Convolutional Normalization: Improving Deep Convolutional Network Robustness and Training", NeurIPS 2021;
their released models/prec_conv.py).

The operator is built from the preceding conv's own weight w (C_out × C_in/g × k × k). Write the conv as
y_c = Σ_{c'} A_{cc'} x_{c'} with A_{cc'} (doubly block) circulant. ConvNorm makes every output channel an
isometry, ỹ_c = (Σ_{c'} A_{cc'} A_{cc'}ᵀ)^(−1/2) y_c ("channel-wise isometry"; not the full (A Aᵀ)^(−1/2),
which would mix output channels). The DFT diagonalises circulants, so per frequency ω

    ỹ_c = irfft2( v̂_c · rfft2(y_c) ),   v̂_c(ω) = ( Σ_{c'} |ŵ_{cc'}(ω)|² + ε )^(−1/2),

followed by a learned depthwise k×k conv with bias (the paper's "affine" part, same k as the conv) and
BatchNorm (option ``bn``, the authors' default). As in the authors' code:

- the conv is evaluated at stride 1 as a full linear convolution (padding d(k−1)), where linear = circular
  on the (H + k_e − 1) × (W + k_e − 1) grid (k_e = d(k−1)+1, the dilated extent), v̂ comes from the kernel
  zero-padded to that grid, and the preconditioned map is cropped to the conv's own padding and then
  subsampled by its stride;
- v̂ is computed from the *detached* weight (no gradient flows through the preconditioner);
- eval uses a running average of v̂, updated in training with the factor
  max(½(1 + cos(π·min(t, T)/T)), 0.01) at batch t (the authors' default, ``momentum=None``; T = ``rampdown``);
- a 1×1 conv's spectrum is flat, so v̂_c = (Σ_{c'} w_{cc'}² + ε)^(−1/2) is one number per channel.

Readings (details the paper and code leave open): ε (default 1e-5) guards a zero spectrum, the authors take
the power −½ of Σ|ŵ|² bare; a dilated conv's v̂ is the spectrum of the dilated kernel (the authors' code pads
by k−1 whatever the dilation); the batch counter t is a saved buffer (theirs a Python int); eval before any
training step, or at a resolution other than the one the running v̂ was kept for, uses the current weight's
v̂ (what the running average tracks), where the authors' code would fail. The module follows a conv only in
``post`` order, where each norm is built by ``Layers.norm(C, after=conv)`` on the conv ``Layers.conv`` made;
the spec refuses the other orders and blocks that do not build their convs so.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import OptionSpec, register_norm


def kernel_power(weight: torch.Tensor, grid: tuple[int, int], dilation: tuple[int, int] = (1, 1)) -> torch.Tensor:
    """Σ_{c'} |ŵ_{cc'}(ω)|² of a conv weight (C_out, C_in/g, k, k), dilated, zero-padded to ``grid``.

    Returns (C_out, H, W//2+1), the layout of ``torch.fft.rfft2`` (unnormalised DFT: the circulant's eigenvalues).
    """
    dy, dx = dilation
    if (dy, dx) != (1, 1):
        co, ci, kh, kw = weight.shape
        dilated = weight.new_zeros(co, ci, dy * (kh - 1) + 1, dx * (kw - 1) + 1)
        dilated[..., ::dy, ::dx] = weight
        weight = dilated
    return torch.fft.rfft2(weight, s=grid).abs().square().sum(1)


def rampdown_factor(step: int, length: int) -> float:
    """The running-average factor at training batch ``step`` (1-based): cosine from 1 to 0.01 over ``length``."""
    t = min(max(step, 0), length)
    return max(0.5 * (math.cos(math.pi * t / length) + 1.0), 1e-2)


class PrecondConv2d(nn.Conv2d):
    """A conv followed by ConvNorm's per-channel preconditioner (A_c A_cᵀ)^(−1/2) from its own weight."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int = 1, *, groups: int = 1,
                 dilation: int = 1, eps: float = 1e-5, rampdown: int = 40000) -> None:
        pad = dilation * (kernel - 1) // 2
        super().__init__(in_chs, out_chs, kernel, stride, pad, dilation=dilation, groups=groups, bias=False)
        self.eps, self.rampdown = eps, rampdown
        self.register_buffer("running_v", torch.empty(out_chs, 0, 0))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}, rampdown={self.rampdown}"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "running_v")
        if saved is not None and saved.shape != self.running_v.shape:
            self.running_v = torch.empty_like(saved, device=self.running_v.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def extent(self) -> tuple[int, int]:
        """The dilated kernel's extent k_e = d(k−1)+1 per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    def weight_v(self, grid: tuple[int, int]) -> torch.Tensor:
        """v̂ of the current (detached) weight on the full ``grid``; (C_out, 1, 1) for a 1×1 conv."""
        w = self.weight.detach()
        power = w.square().sum(dim=(1, 2, 3)).view(-1, 1, 1) if self.extent == (1, 1) \
            else kernel_power(w, grid, self.dilation)
        return torch.rsqrt(power + self.eps)

    def _v(self, grid: tuple[int, int]) -> torch.Tensor:
        v = self.weight_v(grid)
        if self.training:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.running_v.shape != v.shape:  # first batch, or a new training resolution
                    self.running_v = v.clone()
                else:
                    f = rampdown_factor(int(self.num_batches_tracked), self.rampdown)
                    self.running_v.mul_(1.0 - f).add_(f * v)
            return v
        return self.running_v if self.running_v.shape == v.shape else v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (eh, ew), (ph, pw), (sh, sw) = self.extent, self.padding, self.stride
        if (eh, ew) == (1, 1):
            y = F.conv2d(x, self.weight, self.bias, 1, 0, 1, self.groups) * self._v((1, 1))
        else:
            full = F.conv2d(x, self.weight, self.bias, 1, (eh - 1, ew - 1), self.dilation, self.groups)
            grid = (full.shape[-2], full.shape[-1])
            y = torch.fft.irfft2(torch.fft.rfft2(full) * self._v(grid), s=grid)
            h, w = x.shape[-2] + 2 * ph - eh + 1, x.shape[-1] + 2 * pw - ew + 1  # the stride-1 output size
            y = y[..., eh - 1 - ph:eh - 1 - ph + h, ew - 1 - pw:ew - 1 - pw + w]
        return y[..., ::sh, ::sw]


class ConvNormAffine(nn.Module):
    """ConvNorm's part after the preconditioned conv: depthwise k×k affine conv with bias, then BN (``bn``)."""

    def __init__(self, num_features: int, kernel: tuple[int, int], *, bn: bool = True) -> None:
        super().__init__()
        self.affine = nn.Conv2d(num_features, num_features, kernel, padding=(kernel[0] // 2, kernel[1] // 2),
                                groups=num_features, bias=True)
        self.bn = nn.BatchNorm2d(num_features) if bn else nn.Identity()

    def reset_nas_parameters(self) -> None:
        """PyTorch's default conv init for the affine conv (the authors' ``bpconv``), undoing the builder's He init."""
        self.affine.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.affine(x))


def _precond_conv(in_chs: int, out_chs: int, kernel: int, stride: int, *, groups: int, dilation: int,
                  eps: float = 1e-5, rampdown: int = 40000) -> PrecondConv2d:
    return PrecondConv2d(in_chs, out_chs, kernel, stride, groups=groups, dilation=dilation, eps=eps,
                         rampdown=rampdown)


def _convnorm(num_features: int, *, after: nn.Module | None, bn: bool = True) -> nn.Module:
    """ConvNorm (Liu et al. NeurIPS 2021) after ``after``, the ``PrecondConv2d`` it normalises."""
    if not isinstance(after, PrecondConv2d) or after.out_channels != num_features:
        raise ValueError(f"norm: convnorm must follow a conv made by Layers.conv with {num_features} output "
                         f"channels (post order); got {type(after).__name__}")
    return ConvNormAffine(num_features, after.kernel_size, bn=bn)


CONV_BLOCKS = ("basic", "bottleneck", "conv", "mgic", "sk", "sk_basic")
"""Blocks whose post-order norms each follow a conv made by ``Layers.conv`` and are given it."""


def _check(stage) -> str | None:
    if stage.order != "post":
        return f"convnorm normalises the conv before it: needs order post, got order {stage.order!r}"
    if stage.block not in CONV_BLOCKS:
        return (f"convnorm needs every norm of the block to follow a plain conv; block {stage.block!r} does not "
                f"(valid blocks: {', '.join(CONV_BLOCKS)})")
    return None


register_norm("convnorm", _convnorm, conv=_precond_conv, conv_options=("eps", "rampdown"), check=_check, options={
    "bn": OptionSpec(bool, True, "follow with BatchNorm (the authors' default)"),
    "eps": OptionSpec(float, 1e-5, "ε added to Σ|ŵ|² before the power −½", lambda v: v > 0, "> 0"),
    "rampdown": OptionSpec(int, 40000, "training batches over which the running-v̂ factor falls from 1 to 0.01",
                           lambda v: v >= 1, ">= 1")},
    doc="ConvNorm (Liu et al. 2021): the preceding conv's per-channel Fourier preconditioner from its own weight "
        "(channel-wise isometry), depthwise affine conv, BN; post order")
