"""Generative (kernel-selecting) convolution, adapted from GAN generators to classification.

Seed: Park & Shin, "Generative Convolution Layer for Image Generation" (arXiv 2111.15171, 2021):
GConv keeps a bank of kernels, selects the ones compatible with the generator's latent vector and
combines them linearly into a latent-specific kernel. A classifier has no latent vector, so here
the condition is the layer's own input, globally pooled — the reading of CondConv (Yang et al.,
NeurIPS 2019) and Dynamic Convolution (Chen et al., CVPR 2020, softmax-normalised with a temperature):

    a(x) = softmax(W · GAP(x) / τ) ∈ Δ^{K-1},    y = (Σ_k a_k(x) W_k) ⊛ x.

The per-sample kernel is applied in one conv call by folding the batch into groups
(``timm.layers.CondConv2d``: weight (B·C_out, C_in/g, k, k), input (1, B·C_in, H, W), groups g·B).
The softmax (rather than CondConv's sigmoid) makes the combination convex, which is what "selects"
means in GConv; τ > 1 flattens it, τ < 1 sharpens it towards a hard selection.

Registered block ``gconv``: the residual basic block (post: conv-norm-act → conv-norm, add, act;
pre: norm-act-conv → norm-act-conv, add) whose two 3×3 convs are generative convs.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from timm.layers import CondConv2d

from ..layers import Layers, conv2d
from ..registry import OptionSpec, register_block


class GenerativeConv2d(nn.Module):
    """k×k conv whose kernel is a softmax(fc(GAP(x))/τ)-weighted mix of K kernels, one per sample.

    ``forward(x, selection=None)``: pass ``selection`` (B, K) to override the computed weights
    (e.g. a one-hot row reproduces the plain conv with that kernel); ``selection(x)`` returns them.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int = 3, stride: int = 1, *, num_kernels: int = 4,
                 temperature: float = 1.0, groups: int = 1) -> None:
        super().__init__()
        if num_kernels < 1:
            raise ValueError(f"num_kernels: must be >= 1, got {num_kernels}")
        if temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        self.num_kernels = num_kernels
        self.temperature = temperature
        self.route = nn.Linear(in_chs, num_kernels)
        self.conv = CondConv2d(in_chs, out_chs, kernel, stride, padding=(kernel - 1) // 2, groups=groups,
                               bias=False, num_experts=num_kernels)

    def selection(self, x: torch.Tensor) -> torch.Tensor:
        """Kernel-selection weights a(x), shape (B, K); each row sums to 1."""
        logits = self.route(x.mean((2, 3)))
        return torch.softmax(logits / self.temperature, dim=1)

    def kernel(self, index: int) -> torch.Tensor:
        """Kernel ``index`` of the bank, shaped as a ``conv2d`` weight."""
        return self.conv.weight[index].view(self.conv.weight_shape)

    def forward(self, x: torch.Tensor, selection: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.selection(x) if selection is None else selection
        expected = (x.shape[0], self.num_kernels)
        if weights.shape != expected:
            raise ValueError(f"selection: expected shape {expected}, got {tuple(weights.shape)}")
        if torch.onnx.is_in_onnx_export():
            return self._mixed_outputs(x, weights)
        return self.conv(x, weights)

    def _mixed_outputs(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_k a_k (W_k ⊛ x), equal to (Σ_k a_k W_k) ⊛ x by linearity: K convs with a static group count, which
        ONNX needs (the batch-folded groups of ``CondConv2d`` depend on the batch size); K× the conv's MACs."""
        c = self.conv
        outs = [nn.functional.conv2d(x, self.kernel(k), None, c.stride, c.padding, c.dilation, c.groups)
                * weights[:, k, None, None, None] for k in range(self.num_kernels)]
        return torch.stack(outs).sum(0)

    def reset_nas_parameters(self) -> None:
        """He fan-out init for every kernel of the bank (the builder's conv init, per kernel)."""
        out_chs, _, kh, kw = self.conv.weight_shape
        std = math.sqrt(2.0 / (out_chs * kh * kw // self.conv.groups))
        nn.init.normal_(self.conv.weight, 0.0, std)


class GConvBlock(nn.Module):
    """Residual basic block with generative 3×3 convs (post- or pre-activation)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, num_kernels: int = 4,
                 temperature: float = 1.0) -> None:
        super().__init__()
        self.order = layers.order
        kw = dict(num_kernels=num_kernels, temperature=temperature)
        self.conv1 = GenerativeConv2d(in_chs, out_chs, 3, stride, **kw)
        self.conv2 = GenerativeConv2d(out_chs, out_chs, 3, 1, **kw)
        self.attn = layers.attn(out_chs)
        self.act1, self.act2 = layers.act(), layers.act()
        needs_proj = stride != 1 or in_chs != out_chs
        if self.order == "post":
            self.norm1, self.norm2 = layers.norm(out_chs), layers.norm(out_chs)
            self.shortcut = (nn.Sequential(conv2d(in_chs, out_chs, 1, stride), layers.norm(out_chs))
                             if needs_proj else nn.Identity())
        else:  # pre-activation: norms read the conv inputs; the projection reads the activated input
            self.norm1, self.norm2 = layers.norm(in_chs), layers.norm(out_chs)
            self.shortcut = conv2d(in_chs, out_chs, 1, stride) if needs_proj else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "post":
            y = self.act1(self.norm1(self.conv1(x)))
            y = self.norm2(self.conv2(y))
            return self.act2(self.attn(y) + self.shortcut(x))
        xa = self.act1(self.norm1(x))
        y = self.conv2(self.act2(self.norm2(self.conv1(xa))))
        return self.attn(y) + (x if self.shortcut is None else self.shortcut(xa))


register_block(
    "gconv", GConvBlock, orders=("post", "pre"),
    options={
        "num_kernels": OptionSpec(int, 4, "K, kernels in each bank", lambda v: 1 <= v <= 16, "in 1..16"),
        "temperature": OptionSpec(float, 1.0, "τ of the selection softmax", lambda v: v > 0, "> 0"),
    },
    example={"block_args": {"num_kernels": 3}},
    doc="Basic residual block with generative convs: softmax(fc(GAP x)/τ)-mixed bank of K kernels; "
        "Park & Shin 2021 (GConv), CondConv/DynamicConv reading",
)
