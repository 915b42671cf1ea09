"""Residual basic block (two 3×3 convs) in all three unit orders.

- ``pre`` — the Wide-ResNet block (Zagoruyko & Komodakis 2016, after He et al.'s pre-activation):
  BN-ReLU-conv3×3(stride) → BN-ReLU-[dropout]-conv3×3, plus a 1×1 projection shortcut applied to
  the *pre-activated* input when the shape changes.
- ``post`` — the original ResNet basic block: conv-BN-ReLU → conv-BN, add, ReLU; 1×1 conv+BN
  projection when the shape changes.
- ``white_conv`` — the "ours" ResNet unit of Cho et al. (ICCV 2021, "Improving Generalization of Batch
  Whitening by Convolutional Unit Optimization"; their released models/resnet.py): the normaliser (a
  whitening) right before each conv, act(conv1(N1(x))) → N2 → [dropout] → conv2, add, act. Dropout
  sits between the whitening and the conv, as in their WRN, so the whitened statistics are the same in
  train and eval. The projection shortcut reads N1(x); Cho et al.'s ResNet gives the projection a norm
  of its own (same input, separate running statistics and affine), here it shares N1 (a reading that
  keeps one whitening per tensor).

  Cho et al.'s WRN unit (their models/wrn.py) is written act → N1 → conv1 → act → N2 → [dropout] → conv2,
  added to x; its ReLU is in place, so x itself is activated before the addition and the network they
  ran is this block's chain with a conv→act stem (``Stem(act=True)``, as their ResNet) and act → N →
  pool at the end (this block's act2, then the head's whitening).

Attention (SE etc.) gates the residual branch before the addition.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import Layers, conv2d, projection
from ..registry import OptionSpec, register_block


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, *, layers: Layers, dropout: float = 0.0) -> None:
        super().__init__()
        self.order = layers.order
        needs_proj = stride != 1 or in_chs != out_chs
        self.conv1 = layers.conv(in_chs, out_chs, 3, stride)
        self.conv2 = layers.conv(out_chs, out_chs, 3, 1)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.attn = layers.attn(out_chs)
        if self.order == "post":
            self.norm1 = layers.norm(out_chs, after=self.conv1)
            self.norm2 = layers.norm(out_chs, after=self.conv2)
            self.shortcut = projection(in_chs, out_chs, stride, layers) if needs_proj else nn.Identity()
        else:  # pre / white_conv: norms read the conv inputs
            self.norm1, self.norm2 = layers.norm(in_chs), layers.norm(out_chs)
            self.shortcut = conv2d(in_chs, out_chs, 1, stride) if needs_proj else None
        self.act1, self.act2 = layers.act(), layers.act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.order == "post":
            y = self.act1(self.norm1(self.conv1(x)))
            y = self.norm2(self.conv2(self.drop(y)))
            return self.act2(self.attn(y) + self.shortcut(x))
        if self.order == "pre":
            xa = self.act1(self.norm1(x))
            y = self.conv1(xa)
            y = self.conv2(self.drop(self.act2(self.norm2(y))))
            sc = x if self.shortcut is None else self.shortcut(xa)
            return self.attn(y) + sc
        # white_conv
        xw = self.norm1(x)
        y = self.act1(self.conv1(xw))
        y = self.conv2(self.drop(self.norm2(y)))
        sc = x if self.shortcut is None else self.shortcut(xw)
        return self.act2(self.attn(y) + sc)


register_block(
    "basic", BasicBlock, orders=("pre", "post", "white_conv"),
    options={"dropout": OptionSpec(float, 0.0, "dropout between the two convs (WRN)",
                                   lambda v: 0.0 <= v < 1.0, "in [0, 1)")},
    doc="Residual basic block, 3×3+3×3; pre-activation (WRN), post-activation (ResNet) or whitening-before-conv",
)
