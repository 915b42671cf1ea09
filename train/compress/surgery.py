"""Physical channel removal: kept indices per channel group → a smaller architecture and its weights.

The new spec expresses every pruned width: the stem width, each stage's width (its residual
stream) and each block's inner width (``basic_slim``'s ``mids``); a stage whose first block had a
projection shortcut keeps it (``proj: true``). Weights are the old tensors indexed by the kept
channels along every dimension that belongs to a group, so the pruned model computes exactly what
the original computes with the removed channels' gates at zero (see :mod:`.structure`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from space import Arch, Stage, build_model

from .structure import Structure


def pruned_arch(structure: Structure, sizes: dict[str, int]) -> Arch:
    """The spec of the network whose channel groups have widths ``sizes`` (stages become ``basic_slim``)."""
    arch = structure.arch
    stages = []
    for s, stage in enumerate(arch.stages):
        kw = stage.block_kw
        args: dict = {"mids": [sizes[g] for g in structure.mid_groups[s]]}
        if structure.projections[s]:
            args["proj"] = True
        if kw.get("dropout", 0.0):
            args["dropout"] = kw["dropout"]
        stages.append(Stage(block="basic_slim", depth=stage.depth, width=sizes[structure.stage_groups[s]],
                            stride=stage.stride, norm=stage.norm, attention=stage.attention, act=stage.act,
                            order=stage.order, block_args=args, norm_args=stage.norm_args,
                            attn_args=stage.attn_args))
    stem = replace(arch.stem, width=sizes[structure.stem_group])
    return Arch(stem=stem, stages=tuple(stages), head=arch.head, input_size=arch.input_size)


def pruned_state_dict(state: dict[str, torch.Tensor], structure: Structure,
                      keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every grouped dimension indexed by ``keep[group]`` (groups absent from ``keep`` stay whole)."""
    out = {}
    for key, tensor in state.items():
        t = tensor
        for dim, group in structure.dims.get(key, {}).items():
            if group in keep:
                t = t.index_select(dim, keep[group].to(t.device))
        out[key] = t.clone()
    return out


def check_keep(structure: Structure, keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Validate kept indices: known groups, sorted unique in range, at least one channel, prunable groups only."""
    clean = {}
    for name, idx in keep.items():
        if name not in structure.groups:
            raise ValueError(f"keep: unknown channel group {name!r}; groups: {', '.join(structure.groups)}")
        g = structure.groups[name]
        idx = torch.as_tensor(idx, dtype=torch.long).flatten().unique(sorted=True)
        if len(idx) == 0 or idx[0] < 0 or idx[-1] >= g.size:
            raise ValueError(f"keep[{name!r}]: needs 1..{g.size} indices in [0, {g.size}), got {len(idx)}")
        if len(idx) < g.size and not g.prunable:
            raise ValueError(f"keep[{name!r}]: this group cannot be pruned: {g.reason}")
        clean[name] = idx
    return clean


def apply_pruning(model: nn.Module, structure: Structure, keep: dict[str, torch.Tensor]) -> tuple[Arch, nn.Module]:
    """Build the smaller network (new spec + copied weights) that keeps ``keep[group]`` channels of each group.

    The returned model is loaded with ``strict=True`` from the indexed state dict, is on the CPU with
    ``model``'s dtype and training flag.
    """
    keep = check_keep(structure, keep)
    sizes = structure.sizes()
    sizes.update({name: len(idx) for name, idx in keep.items()})
    arch = pruned_arch(structure, sizes)
    state = pruned_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()}, structure, keep)
    classifier = model.get_classifier()
    small = build_model(arch, num_classes=classifier.out_features, in_chans=model.stem[0].in_channels)
    small.load_state_dict(state, strict=True)
    small.to(dtype=next(model.parameters()).dtype)
    small.train(model.training)
    return arch, small
