"""Residual Attention Network stage (Wang et al., "Residual Attention Network for Image Classification",
CVPR 2017), a whole-stage builder registered as ``resattn``.

Layout follows the paper (§3, Fig. 2/3, Table 2) and the authors' released deploy prototxts
(github.com/fwang91/residual-attention-network, imagenet_model/Attention-{56,92}-deploy.prototxt),
which fix the details the text leaves open:

- Unit: He et al.'s pre-activation bottleneck, BN-ReLU-1×1(C/4)-BN-ReLU-3×3(C/4, stride)-BN-ReLU-1×1(C),
  with a 1×1 strided projection of the *pre-activated* input when the shape changes — exactly the
  project's ``bottleneck`` block in ``pre`` order (bottle_ratio 0.25), which is reused here.
- Stage: one unit to ``width`` with ``stride`` (the "Residual Unit" rows of Table 2 that change
  width/resolution), then ``depth`` Attention Modules. The paper's final three units (→2048, /2) are
  a plain ``bottleneck`` stage in ``pre`` order.
- Attention Module (§3): ``p`` pre units → trunk T = ``t`` units, and soft-mask branch M from the same
  input → H = (1 + M)·T (attention residual learning, eq. 3) → ``p`` post units.
- Soft mask (§3.2, Fig. 3): bottom-up — ``mask_depth`` times a 3×3/2 max-pool then ``r`` units, and ``r``
  more units at the lowest resolution; top-down — at each coarser-to-finer level bilinear up-sampling
  (Caffe ``Interp``, align_corners) to the level's size, plus a skip connection (one unit on the
  bottom-up feature of that level, as in the prototxt), then ``r`` units; finally up-sampling to the
  input size, BN-ReLU-1×1 conv-BN-ReLU-1×1 conv, sigmoid. Attention-56 uses depths 3/2/1 at 56/28/14.

``AttentionModule.mask_override`` (``None`` by default) is the ablation hook: set to a number it
replaces M by that constant; with 0 the module reduces to its trunk, H = T.
The stage's attention choice (SE, non-local, ...) gates every unit's residual branch, as in ``basic``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layers import Layers, conv2d
from ..registry import OptionSpec, register_block
from ..spec import Stage
from .bottleneck import Bottleneck, bottleneck_width


def _unit(in_chs: int, out_chs: int, stride: int, layers: Layers) -> nn.Module:
    """The paper's residual unit: the project's ``bottleneck`` block in ``pre`` order, width/4 inside."""
    return Bottleneck(in_chs, out_chs, stride, layers=layers.with_order("pre"), bottle_ratio=0.25)


def _units(n: int, chs: int, layers: Layers) -> nn.Sequential:
    return nn.Sequential(*[_unit(chs, chs, 1, layers) for _ in range(n)])


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=True)


class SoftMaskBranch(nn.Module):
    """Bottom-up top-down mask M(x) ∈ (0, 1)^{C×H×W} (Wang et al. 2017, §3.2, Fig. 3)."""

    def __init__(self, chs: int, *, depth: int, r: int, layers: Layers) -> None:
        super().__init__()
        self.down = nn.ModuleList(nn.Sequential(nn.MaxPool2d(3, 2, 1), *_units(r, chs, layers))
                                  for _ in range(depth))
        self.bottom = _units(r, chs, layers)
        self.skip = nn.ModuleList(_unit(chs, chs, 1, layers) for _ in range(depth - 1))
        self.up = nn.ModuleList(_units(r, chs, layers) for _ in range(depth - 1))
        self.out = nn.Sequential(layers.norm(chs), layers.act(), conv2d(chs, chs, 1),
                                 layers.norm(chs), layers.act(), conv2d(chs, chs, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, h = [], x
        for down in self.down:
            h = down(h)
            feats.append(h)
        h = self.bottom(h)
        for i in reversed(range(len(self.skip))):
            h = self.up[i](_upsample(h, feats[i]) + self.skip[i](feats[i]))
        return self.out(_upsample(h, x))


class AttentionModule(nn.Module):
    """p pre units → (trunk T: t units; soft mask M) → H = (1 + M)·T → p post units (eq. 3)."""

    def __init__(self, chs: int, *, layers: Layers, p: int, t: int, r: int, mask_depth: int) -> None:
        super().__init__()
        self.pre = _units(p, chs, layers)
        self.trunk = _units(t, chs, layers)
        self.mask = SoftMaskBranch(chs, depth=mask_depth, r=r, layers=layers)
        self.post = _units(p, chs, layers)
        self.mask_override: float | None = None

    def parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The intermediate tensors: ``trunk`` T, ``mask`` M and ``fused`` (1 + M)·T, before the post units."""
        x = self.pre(x)
        trunk = self.trunk(x)
        if self.mask_override is None:
            mask = self.mask(x)
        else:
            mask = torch.full_like(trunk, float(self.mask_override))
        return {"trunk": trunk, "mask": mask, "fused": (1.0 + mask) * trunk}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.parts(x)["fused"])


def build_resattn_stage(stage: Stage, in_chs: int, layers: Layers) -> nn.Sequential:
    """One (projection) unit to ``stage.width`` with ``stage.stride``, then ``stage.depth`` Attention Modules."""
    kw = stage.block_kw
    opts = {k: kw.get(k, _OPTIONS[k].default) for k in _OPTIONS}
    mods: list[nn.Module] = [_unit(in_chs, stage.width, stage.stride, layers)]
    mods += [AttentionModule(stage.width, layers=layers, **opts) for _ in range(stage.depth)]
    return nn.Sequential(*mods)


def _check_width(stage: Stage) -> str | None:
    if bottleneck_width(stage.width, 0.25) < 1:
        return f"width: {stage.width} leaves no bottleneck channels (round(width/4) = 0); use a width >= 3"
    return None


def _count(minimum: int, doc: str, default: int) -> OptionSpec:
    return OptionSpec(int, default, doc, lambda v: v >= minimum, f"an integer >= {minimum}")


_OPTIONS = {
    "p": _count(0, "pre-processing units before the trunk/mask split, and post units after (paper: 1)", 1),
    "t": _count(1, "units in the trunk branch (paper: 2)", 2),
    "r": _count(1, "units between adjacent pooling layers of the mask branch (paper: 1)", 1),
    "mask_depth": _count(1, "max-pool/up-sample levels of the mask branch (Attention-56: 3, 2, 1 "
                            "at 56, 28, 14 pixels)", 1),
}

register_block(
    "resattn", build_resattn_stage, kind="stage", orders=("pre",), options=_OPTIONS, check=_check_width,
    norm_widths=lambda st, in_chs: {bottleneck_width(st.width, 0.25)},
    search_exclude={"attention": ("nl", "nl_scaled")},  # N×N attention on its high-resolution stages
    example={"width": 16, "block_args": {"mask_depth": 2}},
    doc="Residual Attention stage: a (strided) pre-act bottleneck unit, then `depth` attention modules, "
        "H = (1 + M)·T with a bottom-up top-down sigmoid mask; Wang et al. 2017",
)
