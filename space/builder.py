"""``build_model(arch, num_classes=..., in_chans=...)``: a pure function from spec to ``nn.Module``."""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace

import torch
import torch.nn as nn

from .layers import Layers, conv2d
from .registry import ATTENTIONS, BLOCKS
from .spec import Arch, Stage


def stage_attention(stage: Stage) -> bool:
    """Whether the stage's attention is one module on its feature stream (``placement="stage"``) rather
    than one per block."""
    placement = ATTENTIONS.entry(stage.attention).meta.get("placement")
    return placement == "stage" and not stage.attn_kw.get("every_block", False)


def build_stage(stage: Stage, in_chs: int) -> nn.Module:
    """``depth`` registered blocks (first one strided), or the registered whole-stage builder.

    An attention registered with ``placement="stage"`` (the non-local blocks) is not given to the blocks:
    one module on the stage's feature stream is inserted before the stage's last module (after it when
    the stage is a single module), named ``attention``; its ``every_block=True`` option keeps it per block.
    """
    entry = BLOCKS.entry(stage.block)
    layers = Layers.from_stage(stage)
    per_stage = stage_attention(stage)
    if per_stage:
        layers = replace(layers, attn_name="none", attn_args=())
    if entry.meta.get("kind") == "stage":
        body = entry.obj(stage, in_chs, layers)
    else:
        body = nn.Sequential(*[entry.obj(in_chs if i == 0 else stage.width, stage.width,
                                         stage.stride if i == 0 else 1, layers=layers, **stage.block_kw)
                               for i in range(stage.depth)])
    if not per_stage:
        return body
    module = ATTENTIONS.get(stage.attention)(stage.width, **stage.attn_kw)
    mods = list(body.named_children()) if isinstance(body, nn.Sequential) else [("0", body)]
    at = len(mods) - 1 if len(mods) >= 2 else 1
    return nn.Sequential(OrderedDict(mods[:at] + [("attention", module)] + mods[at:]))


class NasNet(nn.Module):
    """Stem → stages → head. ``forward_features``/``forward_head`` follow timm's model API."""

    def __init__(self, arch: Arch, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        first = Layers.from_stage(arch.stages[0]).with_order("post")
        stem_conv = first.conv if arch.stem.norm_act else conv2d  # the norm's own conv where it brings one
        stem: list[nn.Module] = [stem_conv(in_chans, arch.stem.width, arch.stem.kernel, arch.stem.stride)]
        if arch.stem.norm_act:
            stem += [first.norm(arch.stem.width, after=stem[0]), first.act()]
        elif arch.stem.act:
            stem.append(first.act())
        if arch.stem.pool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        chs, stages = arch.stem.width, []
        for stage in arch.stages:
            stages.append(build_stage(stage, chs))
            chs = stage.width
        self.stages = nn.Sequential(*stages)
        last = Layers.from_stage(arch.stages[-1])
        if last.order == "pre":
            self.final_norm = nn.Sequential(last.norm(chs), last.act())
        elif last.order == "white_conv":
            self.final_norm = last.norm(chs)
        else:
            self.final_norm = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        if arch.head.hidden:
            self.conv_head = nn.Sequential(nn.Conv2d(chs, arch.head.hidden, 1, bias=True), last.act())
            chs = arch.head.hidden
        else:
            self.conv_head = nn.Identity()
        self.num_features = chs
        self.drop = nn.Dropout(arch.head.dropout) if arch.head.dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(chs, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_norm(self.stages(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.conv_head(self.pool(x)).flatten(1)
        return x if pre_logits else self.classifier(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)


def _init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, N(0, 0.01) for linears; then each module's own paper init.

    A module that defines ``reset_nas_parameters()`` (zero-γ BN of a non-local block, γ=0.1 of
    BN-init-revisited, ...) is called after the generic pass so that its init wins.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        reset = getattr(m, "reset_nas_parameters", None)
        if callable(reset):
            reset()


def build_model(arch: Arch, *, num_classes: int, in_chans: int = 3) -> NasNet:
    """Build the network ``arch`` describes; pure (same spec and seed → same weights)."""
    if not isinstance(arch, Arch):
        raise TypeError(f"arch: expected an Arch, got {type(arch).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans: must be a positive integer, got {in_chans!r}")
    model = NasNet(arch, num_classes=num_classes, in_chans=in_chans)
    if arch.channels:  # a channel-pruned network: the last units of each listed group removed
        from .channels import apply_channels

        apply_channels(model, arch.channels_kw, input_size=arch.input_size, in_chans=in_chans)
    if arch.ranks:  # LRPET's export: listed convs factorised
        from .channels import apply_ranks

        apply_ranks(model, arch.ranks_kw)
    return model
