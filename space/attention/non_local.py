"""Non-local blocks: softmax (embedded Gaussian, Wang et al. 2018) and softmax-free (Cho et al. 2022).

Both compute, over the N = H·W positions of x (B×C×H×W) with embeddings of C·reduction channels,
    θ = W_θ x,  φ = W_φ x,  g = W_g x                                   (1×1 convs)
    y = A g,    z = x + BN(W_z y)                                       (Wang et al. eq. 6)
and differ only in the N×N attention matrix A:

- ``nl`` — embedded Gaussian (Wang et al., "Non-local Neural Networks", CVPR 2018, eq. 3):
  A = softmax_j(θ_iᵀ φ_j); every row of A sums to 1. No temperature (the paper uses none).
- ``nl_scaled`` — softmax-free (Cho et al., "Rethinking Efficacy of Softmax for Lightweight Non-Local
  Neural Networks", arXiv:2207.13423, 2022): the softmax is replaced by a scaling factor,
  A = θᵀφ · s. The abstract says only "replacing softmax operation with the scaling factor"; the full
  text was not reachable here, so s is an option: ``scale="sqrt_n"`` (default, s = 1/√N, the reading
  the project's issue gives) or ``scale="n"`` (s = 1/N, the normalisation of Wang et al.'s own
  "dot product" pairwise function, eq. 4). Rows of A do not sum to 1.

The last BN's γ and β are zero (Wang et al. §4.1: "the block is the identity at initialisation"); this
is set in ``reset_nas_parameters()``, which the builder calls after its generic conv init, so the
block is exactly the identity at init. Cost: A is N×N, i.e. 2·N²·C·reduction multiply-adds — no
``check`` can reject large N because a stage check sees the stage but not its input resolution.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import NonLocalAttn

from ..registry import OptionSpec, register_attention

SCALES = ("sqrt_n", "n")


class NonLocal(NonLocalAttn):
    """Embedded-Gaussian non-local block (Wang et al. 2018, eqs. 1, 3, 6) on timm's ``NonLocalAttn``.

    timm's layer holds the θ/φ/g/W_z 1×1 convs (with bias, as the original Caffe2 code) and the
    zero-init BN; this subclass sets the embedding to ``C·reduction`` channels (paper: C/2), drops
    timm's 1/√C temperature (the paper has none) and exposes the attention matrix.
    """

    def __init__(self, channels: int, *, reduction: float = 0.5) -> None:
        rd = max(1, round(channels * reduction))
        super().__init__(channels, use_scale=False, rd_channels=rd)
        self.channels, self.rd_channels = channels, rd

    def normalize(self, logits: torch.Tensor) -> torch.Tensor:
        """Pairwise function f normalised by C(x): softmax over j (eq. 3)."""
        return F.softmax(logits, dim=-1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The B×N×N matrix A with A[b, i, j] = f(x_i, x_j) / C(x)."""
        theta = self.t(x).flatten(2).transpose(1, 2)  # B×N×C'
        phi = self.p(x).flatten(2)  # B×C'×N
        return self.normalize(torch.bmm(theta, phi))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)  # B×N×C'
        y = torch.bmm(self.attention(x), g).transpose(1, 2).reshape(b, self.rd_channels, h, w)
        return x + self.norm(self.z(y))

    def reset_nas_parameters(self) -> None:
        """Zero γ and β of the final BN: z = x exactly at initialisation (Wang et al. §4.1)."""
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)


class ScaledNonLocal(NonLocal):
    """Softmax-free non-local block (Cho et al. 2022): A = θᵀφ / √N (or / N), no row normalisation."""

    def __init__(self, channels: int, *, reduction: float = 0.5, scale: str = "sqrt_n") -> None:
        if scale not in SCALES:
            raise ValueError(f"scale: must be one of {', '.join(SCALES)}, got {scale!r}")
        super().__init__(channels, reduction=reduction)
        self.scale_mode = scale

    def normalize(self, logits: torch.Tensor) -> torch.Tensor:
        n = logits.shape[-1]
        return logits * (n ** -0.5 if self.scale_mode == "sqrt_n" else 1.0 / n)


_REDUCTION = OptionSpec(float, 0.5, "embedding channels as a fraction of C (Wang et al.: 1/2)",
                        lambda v: 0.0 < v <= 1.0, "in (0, 1]")

register_attention(
    "nl", NonLocal, options={"reduction": _REDUCTION},
    doc="Non-local block, embedded Gaussian (softmax) affinity, zero-γ BN so identity at init; Wang et al. 2018",
)
register_attention(
    "nl_scaled", ScaledNonLocal,
    options={"reduction": _REDUCTION,
             "scale": OptionSpec(str, "sqrt_n", "attention scaling: 1/sqrt(N) or 1/N, N = H·W",
                                 lambda v: v in SCALES, " or ".join(SCALES))},
    doc="Softmax-free non-local block, A = θᵀφ/√N, zero-γ BN so identity at init; Cho et al. 2022",
)
