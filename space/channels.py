"""Channel groups of any built network, the per-group widths of a channel-pruned one (``Arch.channels``),
and the factorised convs of a low-rank one (``Arch.ranks``, :func:`apply_ranks`).

Structural analysis uses torch-pruning's dependency graph (Fang et al., "DepGraph: Towards Any
Structural Pruning", CVPR 2023; package ``torch-pruning``): tracing one forward pass, it finds every
set of channels that must be removed together — a conv's outputs, the norms and readers of them,
residual additions that tie streams across blocks, concatenations, depthwise convs. One such set is a
*channel group*, named by its root: the first conv (in module order) that writes it.

A pruned architecture is the original spec plus ``channels``: ``{root conv path: kept width}``.
:func:`apply_channels` realises it on a freshly built network by removing, in every listed group,
the *last* channels (in units, below); the weights of a pruned network are its own, so only the
shapes matter, and they depend only on how many units each group lost. This makes every block
family prunable without a per-family width option, and keeps the YAML an ordinary spec that
``build_model`` (so ``nas show``, ``nas retrain`` and the timm entry point) builds.

Units. A grouped conv (or a GroupNorm) with G groups over a channel group needs the same number of
channels in each of its G blocks, and torch-pruning's grouped-conv handler assumes the removed
positions are the same in each block. So channels are removed in *units* of the positions
``{j + k·C/L : k = 0..L-1}``, where L is the least common multiple of the group counts of every
grouped conv / GroupNorm in the channel group (L = 1 without any; depthwise convs shrink with their
channels and impose nothing). A channel group with L ∤ C has no unit and is not prunable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn as nn

from .errors import SpecError


def _tp():
    import torch_pruning as tp  # imported on use: building an unpruned network never needs it

    return tp


def _generative_pruner() -> Any:
    """torch-pruning pruner of :class:`space.blocks.gconv.GenerativeConv2d`: one leaf module whose output channels
    are its kernel bank's ``C_out`` and whose input channels are the bank's ``C_in`` and the router's inputs
    (torch-pruning cannot trace timm's batch-folded ``CondConv2d`` itself)."""
    tp = _tp()

    class GenerativeConvPruner(tp.pruner.function.BasePruningFunc):
        def _bank(self, layer: nn.Module) -> torch.Tensor:
            c = layer.conv
            return c.weight.detach().view(c.num_experts, *c.weight_shape)

        def _set(self, layer: nn.Module, bank: torch.Tensor) -> None:
            c = layer.conv
            c.out_channels, c.in_channels = bank.shape[1], bank.shape[2] * c.groups
            c.weight_shape = tuple(bank.shape[1:])
            c.weight = nn.Parameter(bank.reshape(c.num_experts, -1).clone())

        def prune_out_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
            keep = sorted(set(range(layer.conv.out_channels)) - set(idxs))
            if layer.conv.bias is not None:
                bias = layer.conv.bias.detach().view(layer.conv.num_experts, -1)[:, keep]
                layer.conv.bias = nn.Parameter(bias.reshape(layer.conv.num_experts, -1).clone())
                layer.conv.bias_shape = (len(keep),)
            self._set(layer, self._bank(layer)[:, keep])
            return layer

        def prune_in_channels(self, layer: nn.Module, idxs: list) -> nn.Module:
            if layer.conv.groups != 1:
                raise ValueError("grouped generative convs are not prunable")
            keep = sorted(set(range(layer.conv.in_channels)) - set(idxs))
            self._set(layer, self._bank(layer)[:, :, keep])
            r = layer.route
            r.weight = nn.Parameter(r.weight.detach()[:, keep].clone())
            r.in_features = len(keep)
            return layer

        def get_out_channels(self, layer: nn.Module) -> int:
            return layer.conv.out_channels

        def get_in_channels(self, layer: nn.Module) -> int:
            return layer.conv.in_channels

    return GenerativeConvPruner()


def _quiet_build(model: nn.Module, input_size: int, in_chans: int) -> Any:
    """torch-pruning's dependency graph of ``model`` traced on one zero image (eval mode, then restored)."""
    from .blocks.gconv import GenerativeConv2d

    tp = _tp()
    was = model.training
    model.eval()
    try:
        p = next(model.parameters())
        example = torch.zeros(1, in_chans, input_size, input_size, device=p.device, dtype=p.dtype)
        return tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False,
                                                     customized_pruners={GenerativeConv2d: _generative_pruner()})
    finally:
        model.train(was)


ROOT_TYPES = (nn.Conv2d,)
"""Modules that root a channel group (plus :class:`space.blocks.gconv.GenerativeConv2d`, added on use)."""


def _root_types() -> tuple[type, ...]:
    from .blocks.gconv import GenerativeConv2d

    return (*ROOT_TYPES, GenerativeConv2d)


def out_channels(graph: Any, module: nn.Module) -> int:
    return graph.get_pruner_of_module(module).get_out_channels(module)


def _prune_out(graph: Any, module: nn.Module) -> Any:
    return graph.get_pruner_of_module(module).prune_out_channels


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def unit_count(group: Any) -> int:
    """L of the module docstring: lcm of the block counts of the grouped convs / GroupNorms in ``group``."""
    lcm = 1
    for dep, _ in group:
        m = dep.target.module
        if isinstance(m, nn.Conv2d) and m.groups > 1 and not _is_depthwise(m):
            lcm = math.lcm(lcm, m.groups)
        elif isinstance(m, nn.GroupNorm) and m.num_groups > 1:
            lcm = math.lcm(lcm, m.num_groups)
    return lcm


def unit_channels(size: int, lcm: int, positions: Iterable[int]) -> list[int]:
    """Channel indices of the units at ``positions`` (0 ≤ j < size/lcm) of a group of ``size`` channels."""
    step = size // lcm
    return sorted(j + k * step for j in positions for k in range(lcm))


@dataclass
class ChannelGroup:
    """One channel group: its root conv's path, size, unit count L, and the torch-pruning group."""

    root: str
    size: int
    lcm: int
    group: Any

    @property
    def units(self) -> int:
        """Number of removable units (0 when L does not divide the size)."""
        return self.size // self.lcm if self.size % self.lcm == 0 else 0


def channel_groups(model: nn.Module, graph: Any) -> list[ChannelGroup]:
    """Every conv-rooted channel group of ``model`` (the classifier's outputs excluded), in module order."""
    names = {id(m): n for n, m in model.named_modules()}
    ignored = [m for m in (model.get_classifier(),) if isinstance(m, nn.Module)] if hasattr(model, "get_classifier") \
        else []
    order = {id(m): i for i, m in enumerate(model.modules())}
    out = []
    roots = _root_types()
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=roots):
        convs = [dep.target.module for dep, _ in group
                 if isinstance(dep.target.module, roots) and dep.handler == _prune_out(graph, dep.target.module)]
        if not convs:
            continue
        root = min(convs, key=lambda m: order[id(m)])
        out.append(ChannelGroup(names[id(root)], out_channels(graph, root), unit_count(group), group))
    out.sort(key=lambda g: order[id(model.get_submodule(g.root))])
    return out


def prune_units(model: nn.Module, graph: Any, root: str, positions: Iterable[int]) -> None:
    """Remove the units at ``positions`` of the channel group rooted at ``root`` (in place)."""
    conv = model.get_submodule(root)
    fn = _prune_out(graph, conv)
    lcm = unit_count(graph.get_pruning_group(conv, fn, idxs=[0]))
    idxs = unit_channels(out_channels(graph, conv), lcm, positions)
    graph.get_pruning_group(conv, fn, idxs=idxs).prune()


def apply_channels(model: nn.Module, channels: dict[str, int], *, input_size: int, in_chans: int) -> None:
    """Shrink ``model`` in place so that each listed root conv writes ``channels[root]`` channels.

    The last units of each group are removed (see the module docstring). Raises :class:`SpecError`
    naming ``channels.<root>`` for a path that is not a conv rooting a channel group, or a width that
    the group's units cannot reach.
    """
    if not channels:
        return
    graph = _quiet_build(model, input_size, in_chans)
    groups = {g.root: g for g in channel_groups(model, graph)}
    for root, width in sorted(channels.items()):
        where = f"channels.{root}"
        if root not in groups:
            raise SpecError(where, f"no channel group is rooted at {root!r} in this architecture; roots: "
                                   f"{', '.join(sorted(groups)) or 'none'}")
        g = groups[root]
        if not g.units or width > g.size or (g.size - width) % g.lcm or width < g.lcm:
            raise SpecError(where, f"width {width} is not reachable: the group has {g.size} channels removed in "
                                   f"units of {g.lcm}")
        drop = (g.size - width) // g.lcm
        if drop:
            prune_units(model, graph, root, range(g.units - drop, g.units))


class FactorisedConv2d(nn.Sequential):
    """Rank-``r`` replacement of a conv: ``v`` (k×k, ``C_in``→``G·r``, the conv's stride/padding/dilation and
    groups G, no bias), then ``u`` (1×1, ``G·r``→``C_out``, G groups, the conv's bias) — the factorisation
    LRPET exports; a grouped conv is factorised group by group, ``r`` per group."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        g = conv.groups
        self.v = nn.Conv2d(conv.in_channels, g * rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                           groups=g, bias=False)
        self.u = nn.Conv2d(g * rank, conv.out_channels, 1, groups=g, bias=conv.bias is not None)
        self.in_channels, self.out_channels, self.rank = conv.in_channels, conv.out_channels, rank


def apply_ranks(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace each listed dense conv of ``model`` by its rank-``r`` :class:`FactorisedConv2d` (in place).

    Raises :class:`SpecError` naming ``ranks.<path>`` for a path that is not a conv, or a rank above
    ``min(C_out/G, C_in/G·k²)`` (the rank of one group's weight).
    """
    for path, rank in sorted(ranks.items()):
        where = f"ranks.{path}"
        try:
            conv = model.get_submodule(path)
        except AttributeError:
            conv = None
        if not isinstance(conv, nn.Conv2d):
            raise SpecError(where, f"{path!r} is not a conv of this architecture")
        full = min(conv.out_channels // conv.groups, conv.weight[0].numel())
        if rank > full:
            raise SpecError(where, f"rank {rank} exceeds the conv's full rank {full}")
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, name, FactorisedConv2d(conv, rank))
