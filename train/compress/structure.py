"""Channel groups of a ``NasNet`` built of basic-block stages: what is pruned together, and what it costs.

A *channel group* is a set of feature-map channels that one index addresses in every tensor that
touches it:

- the inner width of one block (conv1's outputs = conv2's inputs): group ``stages.S.B.mid``;
- a residual stream: the outputs of all blocks of a stage are added channel by channel through the
  identity shortcuts, so they are one group, and so is the stage's *input* when its first block has
  no projection (the previous stage's stream, or the stem). Residual-connected channels are
  therefore always pruned together, and a stage's width stays one number, as the spec needs.

Gates. Molchanov et al. 2019 ("Importance Estimation for Neural Network Pruning", CVPR, §3 and
Table 2 "gate after BN") put a multiplicative gate after each batch-norm layer. Here the gates of a
group are the ``BatchNorm2d`` layers that normalise it: in ``post`` order the norms right after the
convs that write it, in ``pre``/``white_conv`` order the norms right before the convs that read it.
Zeroing every gate of a group makes *removing* that group's channel exact when either every
producer is followed by a gate (the channel is then zero everywhere and readers read zeros) or
every reader reads it through a gate; the activation after a gate must map 0 to 0. A group that
meets neither condition (e.g. a post-order stem without norm), or whose norm is not a per-channel
``BatchNorm2d`` (group norm, whitening), or whose stream passes through an attention module, is
kept at full width, with the reason in :attr:`ChannelGroup.reason`.

Cost model. Every state-dict tensor is described by its shape with each pruned dimension named by
its group, so parameters and multiply-adds (conv/linear, the papers' MACs as
:func:`space.complexity.count_complexity` reports them) are exact functions of the group widths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from space import BLOCKS
from space.blocks.basic import BasicBlock

SUPPORTED_BLOCKS = ("basic", "basic_slim")
"""Stage blocks whose channels :func:`analyse` understands (dense basic blocks)."""


@dataclass
class ChannelGroup:
    """One group of tied channels: its size, the spec fields it sets, its gates, producers and readers."""

    name: str
    size: int
    targets: list[tuple[Any, ...]] = field(default_factory=list)  # ("stem",), ("width", s), ("mid", s, b)
    gates: list[str] = field(default_factory=list)                # BatchNorm module names (gate after each)
    producers: list[tuple[str, bool]] = field(default_factory=list)  # (conv name, followed by a gate)
    readers: list[tuple[str, bool]] = field(default_factory=list)    # (conv/linear name, through a gate)
    problems: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        """Why this group cannot be pruned exactly, or ``None`` when it can."""
        if self.problems:
            return self.problems[0]
        if not self.gates:
            return "no BatchNorm normalises it, so there is no gate to score or zero it"
        if not (all(g for _, g in self.producers) or all(g for _, g in self.readers)):
            return ("it is written by a conv with no norm after it and read by a conv with no norm before it; "
                    "zeroing its gates would not remove it exactly")
        return None

    @property
    def prunable(self) -> bool:
        return self.reason is None


@dataclass
class ConvInfo:
    """A block's dense 3×3 conv: module name, its module, the BatchNorm directly on its output (or None)."""

    name: str
    module: nn.Conv2d
    bn: str | None
    hw: int


@dataclass
class Structure:
    """What :func:`analyse` finds: groups, per-tensor group dimensions, shapes and MAC weights."""

    arch: Any
    groups: dict[str, ChannelGroup]
    dims: dict[str, dict[int, str]]          # state-dict key -> {dim: group name}
    shapes: dict[str, tuple[int, ...]]
    params: set[str]                         # keys that are parameters (not buffers)
    hw: dict[str, int]                       # conv/linear weight key -> output positions (1 for linear)
    stem_group: str
    stage_groups: list[str]                  # stream group of each stage
    mid_groups: list[list[str]]              # mid group of each block
    projections: list[bool]                  # first block of each stage has a projection shortcut
    block_convs: list[ConvInfo]              # conv1/conv2 of every block, in order

    def sizes(self) -> dict[str, int]:
        return {name: g.size for name, g in self.groups.items()}

    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups.values() if g.prunable]

    def cost(self, sizes: dict[str, int] | None = None) -> dict[str, int]:
        """``{"macs", "params"}`` of the network with group widths ``sizes`` (default: the current ones)."""
        sizes = self.sizes() if sizes is None else sizes
        macs = params = 0
        for key, shape in self.shapes.items():
            dims = self.dims.get(key, {})
            numel = math.prod(sizes[dims[i]] if i in dims else n for i, n in enumerate(shape))
            if key in self.params:
                params += numel
            if key in self.hw:
                macs += numel * self.hw[key]
        return {"macs": macs, "params": params}

    def producer_keys(self, group: str) -> list[str]:
        """Weight keys of the convs whose output channels are ``group``."""
        return [f"{name}.weight" for name, _ in self.groups[group].producers]


class _Walker:
    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        self.names = {id(m): n for n, m in self.modules.items()}
        self.groups: dict[str, ChannelGroup] = {}
        self.dims: dict[str, dict[int, str]] = {}

    def name(self, module: nn.Module) -> str:
        return self.names[id(module)]

    def group(self, name: str, size: int, target: tuple[Any, ...]) -> ChannelGroup:
        g = ChannelGroup(name, size, [target])
        self.groups[name] = g
        return g

    def _dim(self, key: str, dim: int, group: ChannelGroup) -> None:
        self.dims.setdefault(key, {})[dim] = group.name

    def _gate(self, group: ChannelGroup, norm: nn.Module, act: nn.Module | None) -> None:
        name = self.name(norm)
        if not isinstance(norm, nn.BatchNorm2d):
            group.problems.append(f"its norm {name} ({type(norm).__name__}) is not a per-channel BatchNorm2d")
            return
        if name not in group.gates:
            group.gates.append(name)
            for t in ("weight", "bias", "running_mean", "running_var"):
                if getattr(norm, t, None) is not None:
                    self._dim(f"{name}.{t}", 0, group)
        self.zero_preserving(group, act)

    def zero_preserving(self, group: ChannelGroup, act: nn.Module | None) -> None:
        if act is None:
            return
        p = next(act.parameters(), None)
        with torch.no_grad():
            if act(torch.zeros(1, 1, 1, 1, device=p.device if p is not None else None)).abs().max() != 0:
                group.problems.append(f"activation {type(act).__name__} does not map 0 to 0")

    def produce(self, group: ChannelGroup, conv: nn.Module, norm: nn.Module | None = None,
                act: nn.Module | None = None) -> None:
        name = self.name(conv)
        group.producers.append((name, norm is not None))
        self._dim(f"{name}.weight", 0, group)
        if getattr(conv, "bias", None) is not None:
            self._dim(f"{name}.bias", 0, group)
        if norm is not None:
            self._gate(group, norm, act)

    def read(self, group: ChannelGroup, reader: nn.Module, norm: nn.Module | None = None,
             act: nn.Module | None = None) -> None:
        name = self.name(reader)
        group.readers.append((name, norm is not None))
        self._dim(f"{name}.weight", 1, group)
        if norm is not None:
            self._gate(group, norm, act)


def _block(w: _Walker, blk: BasicBlock, cur: ChannelGroup, s: int, b: int,
           stage_groups: list[str]) -> tuple[ChannelGroup, ChannelGroup, list[ConvInfo]]:
    identity = blk.shortcut is None or isinstance(blk.shortcut, nn.Identity)
    if identity:
        out = cur
        if ("width", s) not in out.targets:
            out.targets.append(("width", s))
    else:
        out = w.group(f"stages.{s}.stream", blk.conv2.out_channels, ("width", s))
    if b == 0:
        stage_groups.append(out.name)
    mid = w.group(f"stages.{s}.{b}.mid", blk.conv1.out_channels, ("mid", s, b))
    if not isinstance(blk.attn, nn.Identity):
        out.problems.append(f"attention {type(blk.attn).__name__} in {w.name(blk)} mixes the stream's channels")
    if blk.order == "post":
        w.read(cur, blk.conv1)
        w.produce(mid, blk.conv1, blk.norm1, blk.act1)
        w.read(mid, blk.conv2)
        w.produce(out, blk.conv2, blk.norm2)
        if not identity:
            w.read(cur, blk.shortcut[0])
            w.produce(out, blk.shortcut[0], blk.shortcut[1])
        w.zero_preserving(out, blk.act2)  # a zeroed stream channel passes act2 after the addition
        bns = (w.name(blk.norm1), w.name(blk.norm2))
    elif blk.order == "pre":
        w.read(cur, blk.conv1, blk.norm1, blk.act1)
        if not identity:
            w.read(cur, blk.shortcut, blk.norm1, blk.act1)
        w.produce(mid, blk.conv1, blk.norm2, blk.act2)  # conv1 → dropout → norm2 → act2 → conv2
        w.read(mid, blk.conv2, blk.norm2, blk.act2)
        w.produce(out, blk.conv2)
        if not identity:
            w.produce(out, blk.shortcut)
        bns = (w.name(blk.norm2), None)
    else:  # white_conv: norm right before each conv, act1 between conv1 and norm2
        w.read(cur, blk.conv1, blk.norm1)
        if not identity:
            w.read(cur, blk.shortcut, blk.norm1)
        w.produce(mid, blk.conv1)
        w.read(mid, blk.conv2, blk.norm2)
        w.produce(out, blk.conv2)
        if not identity:
            w.produce(out, blk.shortcut)
        bns = (None, None)
    convs = []
    for conv, bn in zip((blk.conv1, blk.conv2), bns):
        norm = w.modules[bn] if bn is not None else None
        convs.append(ConvInfo(w.name(conv), conv, bn if isinstance(norm, nn.BatchNorm2d) else None, 0))
    return out, mid, convs


def _output_positions(model: nn.Module, input_size: int, in_chans: int) -> dict[str, int]:
    """Output H·W of every conv (1 for every linear) on one ``input_size``² image."""
    names = {id(m): n for n, m in model.named_modules()}
    hw: dict[str, int] = {}

    def hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        hw[f"{names[id(m)]}.weight"] = out.shape[-1] * out.shape[-2] if isinstance(m, nn.Conv2d) else 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, in_chans, input_size, input_size, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return hw


def analyse(model: nn.Module) -> Structure:
    """Channel groups, gates and cost model of ``model`` (a ``NasNet`` of ``basic``/``basic_slim`` stages).

    Raises ``ValueError`` naming the stage when a stage uses another block (or low-rank convs).
    """
    arch = getattr(model, "arch", None)
    if arch is None or not hasattr(model, "stages"):
        raise ValueError(f"model: expected a NasNet built by space.build_model, got {type(model).__name__}")
    for s, stage in enumerate(arch.stages):
        if BLOCKS.entry(stage.block).name not in SUPPORTED_BLOCKS:
            raise ValueError(f"stages[{s}].block: {stage.block!r} is not supported by channel pruning / low-rank "
                             f"projection; supported: {', '.join(SUPPORTED_BLOCKS)}")
    w = _Walker(model)
    stem_conv = model.stem[0]
    cur = w.group("stem", stem_conv.out_channels, ("stem",))
    if arch.stem.norm_act:
        w.produce(cur, stem_conv, model.stem[1], model.stem[2])
    else:
        w.produce(cur, stem_conv)
    stem_group = cur.name
    stage_groups: list[str] = []
    mid_groups: list[list[str]] = []
    projections: list[bool] = []
    block_convs: list[ConvInfo] = []
    for s, stage in enumerate(model.stages):
        mids = []
        for b, blk in enumerate(stage):
            if not isinstance(blk, BasicBlock) or not all(isinstance(c, nn.Conv2d) for c in (blk.conv1, blk.conv2)):
                raise ValueError(f"stages[{s}]: block {b} is not a dense basic block ({type(blk).__name__})")
            if b == 0:
                projections.append(not (blk.shortcut is None or isinstance(blk.shortcut, nn.Identity)))
            cur, mid, convs = _block(w, blk, cur, s, b, stage_groups)
            mids.append(mid.name)
            block_convs += convs
        mid_groups.append(mids)
    fn = model.final_norm
    norm, act = (fn[0], fn[1]) if isinstance(fn, nn.Sequential) else (None if isinstance(fn, nn.Identity) else fn, None)
    if isinstance(model.conv_head, nn.Identity):
        w.read(cur, model.classifier, norm, act)
    else:
        w.read(cur, model.conv_head[0], norm, act)
    hw = _output_positions(model, arch.input_size, stem_conv.in_channels)
    for c in block_convs:
        c.hw = hw[f"{c.name}.weight"]
    state = model.state_dict()
    param_keys = {n for n, _ in model.named_parameters()}
    return Structure(arch=arch, groups=w.groups, dims=w.dims, shapes={k: tuple(v.shape) for k, v in state.items()},
                     params=param_keys, hw=hw, stem_group=stem_group, stage_groups=stage_groups,
                     mid_groups=mid_groups, projections=projections, block_convs=block_convs)
