"""Non-local blocks: softmax (embedded Gaussian, Wang et al. 2018) and softmax-free (Cho et al. 2022).

Both compute, over the N = H·W positions of x (B×C×H×W) with embeddings of C' = C·reduction channels
split into ``heads`` heads of C'/heads channels,
    θ = W_θ x,  φ = W_φ x,  g = W_g x                                   (1×1 convs, no bias)
    y_h = A_h g_h (per head), y = concat_h y_h,  z = x + BN(W_z y)       (Wang et al. eq. 6)
and differ only in the N×N attention matrix A_h:

- ``nl`` — embedded Gaussian (Wang et al., "Non-local Neural Networks", CVPR 2018, eq. 3):
  A = softmax_j(θ_iᵀ φ_j); every row of A sums to 1. No temperature (the paper uses none).
- ``nl_scaled`` — softmax-free (Cho, Kim, Cho, Ahn, Hong & Kim, "Rethinking Efficacy of Softmax for
  Lightweight Non-Local Neural Networks", ICIP 2022, arXiv:2207.13423; code YooshinCho/pytorch_RethinkingSFM):
  the softmax is replaced by a scaling factor, A = θᵀφ / √N (their code: ``attention.div((h*w)**0.5)``);
  ``scale="n"`` (A = θᵀφ / N, Wang et al.'s "dot product" normalisation, eq. 4) is kept as a variant.
  Multi-head attention is what the abstract highlights (free for the softmax-free form): their multi-head
  runs give every head C/heads channels, i.e. ``reduction=1.0`` with ``heads=h`` here.

Position encoding (``pos_enc="sine"``, Cho et al.'s ``add_init``, their code's default): a fixed 2-D
sinusoid table P (first C/2 channels encode the row, the others the column; channel pair 2i, 2i+1 holds
sin, cos of pos / 10000^(2i/(C/2))) is added to the input, and the block computes
z = (x + P) + BN(W_z y(x + P)) — their residual reads the encoded input. Default ``"none"`` (Wang et al.).

Placement (Wang et al. §4 and Cho et al.'s code): one standalone block on the full feature stream of a
stage, inserted before the stage's last block (registry meta ``placement="stage"``, done by
:func:`space.builder.build_stage`); a one-block stage gets it after its block (a reading: neither paper
places one there). ``every_block=True`` keeps the other variant, one block gating each residual branch.

Init as in the references: the four 1×1 convs N(0, 0.01) (Cho et al.'s ``cinit=0.01``, Wang et al.'s
Caffe2 std 0.01), the last BN's γ and β zero, so z = x at init without a position encoding; set in
``reset_nas_parameters()``, which the builder calls after its generic init. Cost: A is N×N, i.e.
2·N²·C' multiply-adds — no ``check`` can reject large N (a stage check does not see the resolution).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import OptionSpec, register_attention

SCALES = ("sqrt_n", "n")
POS_ENCODINGS = ("none", "sine")


def sinusoid_2d(channels: int, height: int, width: int) -> torch.Tensor:
    """Cho et al.'s fixed 2-D table (1×C×H×W): rows in channels [0, C/2), columns in [C/2, 2·(C/2)); an odd
    C leaves its last channel zero."""
    d = channels // 2
    idx = torch.arange(d, dtype=torch.float64)
    rate = torch.pow(10000.0, 2 * torch.div(idx, 2, rounding_mode="floor") / max(d, 1))
    out = torch.zeros(channels, height, width, dtype=torch.float64)
    for k, (n, axis) in enumerate(((height, 1), (width, 2))):
        angle = torch.arange(n, dtype=torch.float64)[None] / rate[:, None]  # d×n
        table = torch.where((idx % 2 == 0)[:, None], torch.sin(angle), torch.cos(angle))
        out[k * d:(k + 1) * d] = table[:, :, None] if axis == 1 else table[:, None, :]
    return out.float()[None]


class NonLocal(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018, eqs. 1, 3, 6), optionally multi-head."""

    def __init__(self, channels: int, *, reduction: float = 0.5, heads: int = 1, pos_enc: str = "none",
                 every_block: bool = False) -> None:
        super().__init__()
        rd = max(1, round(channels * reduction))
        if rd % heads:
            raise ValueError(f"heads: {heads} does not divide the {rd} embedding channels (C·reduction)")
        if pos_enc not in POS_ENCODINGS:
            raise ValueError(f"pos_enc: must be one of {', '.join(POS_ENCODINGS)}, got {pos_enc!r}")
        self.channels, self.rd_channels, self.heads, self.pos_enc = channels, rd, heads, pos_enc
        self.every_block = every_block  # read by the builder (placement), not by forward
        self.t, self.p, self.g = (nn.Conv2d(channels, rd, 1, bias=False) for _ in range(3))
        self.z = nn.Conv2d(rd, channels, 1, bias=False)
        self.norm = nn.BatchNorm2d(channels)

    def normalize(self, logits: torch.Tensor) -> torch.Tensor:
        """Pairwise function f normalised by C(x): softmax over j (eq. 3)."""
        return F.softmax(logits, dim=-1)

    def _heads(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return conv(x).reshape(b * self.heads, self.rd_channels // self.heads, -1)  # (B·heads)×C'_h×N

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x + P (Cho et al.'s position encoding) or x."""
        if self.pos_enc == "none":
            return x
        return x + sinusoid_2d(x.shape[1], x.shape[2], x.shape[3]).to(x)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The (B·heads)×N×N matrices A with A[b, i, j] = f(x_i, x_j) / C(x), of the encoded input."""
        x = self.encode(x)
        return self.normalize(torch.bmm(self._heads(self.t, x).transpose(1, 2), self._heads(self.p, x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        a = self.attention(x)
        x = self.encode(x)
        y = torch.bmm(a, self._heads(self.g, x).transpose(1, 2))  # (B·heads)×N×C'_h
        y = y.transpose(1, 2).reshape(b, self.rd_channels, h, w)
        return x + self.norm(self.z(y))

    def reset_nas_parameters(self) -> None:
        """Convs N(0, 0.01), last BN's γ = β = 0: z = x (+P) at initialisation."""
        for conv in (self.t, self.p, self.g, self.z):
            nn.init.normal_(conv.weight, 0.0, 0.01)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)


class ScaledNonLocal(NonLocal):
    """Softmax-free non-local block (Cho et al. 2022): A = θᵀφ / √N (or / N), no row normalisation."""

    def __init__(self, channels: int, *, reduction: float = 0.5, heads: int = 1, pos_enc: str = "none",
                 every_block: bool = False, scale: str = "sqrt_n") -> None:
        if scale not in SCALES:
            raise ValueError(f"scale: must be one of {', '.join(SCALES)}, got {scale!r}")
        super().__init__(channels, reduction=reduction, heads=heads, pos_enc=pos_enc, every_block=every_block)
        self.scale_mode = scale

    def normalize(self, logits: torch.Tensor) -> torch.Tensor:
        n = logits.shape[-1]
        return logits * (n ** -0.5 if self.scale_mode == "sqrt_n" else 1.0 / n)


def _check_heads(stage) -> str | None:
    kw = dict(stage.attn_args)
    rd = max(1, round(stage.width * kw.get("reduction", 0.5)))
    heads = kw.get("heads", 1)
    return None if rd % heads == 0 else f"attn_args.heads: {heads} does not divide the {rd} embedding channels"


_OPTIONS = {
    "reduction": OptionSpec(float, 0.5, "embedding channels as a fraction of C (Wang et al.: 1/2)",
                            lambda v: 0.0 < v <= 1.0, "in (0, 1]"),
    "heads": OptionSpec(int, 1, "attention heads splitting the embedding (Cho et al.)", lambda v: v >= 1, ">= 1"),
    "pos_enc": OptionSpec(str, "none", "2-D sinusoid position encoding added to the input (Cho et al.)",
                          lambda v: v in POS_ENCODINGS, " or ".join(POS_ENCODINGS)),
    "every_block": OptionSpec(bool, False, "one block on every residual branch instead of one per stage"),
}

register_attention(
    "nl", NonLocal, options=_OPTIONS, placement="stage", check=_check_heads,
    doc="Non-local block, embedded Gaussian (softmax) affinity, once per stage before its last block, zero-γ BN "
        "so identity at init; Wang et al. 2018",
)
register_attention(
    "nl_scaled", ScaledNonLocal, placement="stage", check=_check_heads,
    options={**_OPTIONS, "scale": OptionSpec(str, "sqrt_n", "attention scaling: 1/sqrt(N) or 1/N, N = H·W",
                                             lambda v: v in SCALES, " or ".join(SCALES))},
    doc="Softmax-free non-local block, A = θᵀφ/√N, multi-head, once per stage before its last block; "
        "Cho et al. 2022",
)
