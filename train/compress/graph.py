"""Taylor channel pruning for every block family, on torch-pruning's dependency graph.

:mod:`.structure` hand-codes the channel groups of ``basic`` stages. For every other family (Ghost,
SK, bottleneck/ResNeXt/RegNet, G-Ghost, MGIC, GConv, residual attention, ...) the groups come from
torch-pruning's dependency graph (:mod:`space.channels`): the tool finds what must be removed together
— including grouped convs, depthwise convs, concatenations and residual sums — and removes it
physically. The importance is the same as :mod:`.taylor`'s (Molchanov et al. 2019, gate after
BatchNorm): for a unit ``S`` of channels removed together,

    I_S(b) = ( Σ_{c ∈ S} Σ_{BN gates of c} γ_c·∂L_b/∂γ_c + β_c·∂L_b/∂β_c )²

— the paper's group contribution (its Eq. 4 summed over the set; ``g·(γx̂+β)`` at ``g = 1`` gives the
γ/β form), averaged over the mini-batches since the last step and ranked globally.

Which groups are pruned. A group is pruned only when removing it equals zeroing its BatchNorm gates:
at analysis time each group is checked on a copy of the network with random BN statistics — its last
unit gated to zero in every BN of the group versus physically removed — and kept at full width with
the reason otherwise (no BN normalises it; a path that bypasses the gates, e.g. an attention module
mixing the channels, Ghost's cut concatenation; or a structure torch-pruning cannot follow). The
check is what makes the exported network compute what the gated one computed.

The exported architecture is the original spec plus ``channels`` (each pruned group's root conv and
its kept width), built by ``build_model`` like any spec; :meth:`GraphPruner.finalize` checks that the
rebuilt network loads the pruned weights strictly and gives the same outputs.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from space import Arch, build_model
from space.channels import _prune_out, _quiet_build, channel_groups, out_channels, prune_units, unit_channels

CHECK_TOLERANCE = 1e-3
"""Relative tolerance of the gate-vs-removal check (float32 sums in a different order)."""


def conv_linear_macs(model: nn.Module, *, input_size: int, in_chans: int) -> int:
    """Multiply-adds of every conv and linear layer on one image (the papers' MACs; fast hook count)."""
    total = 0

    from timm.layers import CondConv2d

    def hook(m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, (nn.Conv2d, CondConv2d)):  # CondConv2d: the generative conv's per-sample kernel
            total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            total += m.in_features * m.out_features

    kinds = (nn.Conv2d, nn.Linear, CondConv2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was = model.training
    model.eval()
    try:
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, in_chans, input_size, input_size, device=p.device, dtype=p.dtype))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return total


def _bn_items(group: Any) -> list[tuple[nn.BatchNorm2d, list[int], list[int]]]:
    """``(bn, bn channel indices, root channel indices)`` of every BatchNorm2d output in ``group``."""
    import torch_pruning as tp

    items = []
    for i, (dep, idxs) in enumerate(group):
        m = dep.target.module
        if isinstance(m, nn.BatchNorm2d) and dep.handler == tp.prune_batchnorm_out_channels:
            items.append((m, [int(j) for j in idxs], [int(r) for r in group[i].root_idxs]))
    return items


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_mean.copy_(0.4 * torch.rand(n, generator=g) - 0.2)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))


def check_group(model: nn.Module, root: str, *, input_size: int, in_chans: int) -> str | None:
    """Why the group rooted at ``root`` cannot be pruned exactly through its BN gates, or ``None``."""
    ref = copy.deepcopy(model).cpu().float().eval()
    _randomise_norms(ref)
    graph = _quiet_build(ref, input_size, in_chans)
    groups = {g.root: g for g in channel_groups(ref, graph)}
    g = groups[root]
    if g.units < 2:
        return (f"its {g.size} channels form {g.units} unit(s) of {g.lcm} (grouped convs/norms); "
                f"none can be removed")
    items = _bn_items(g.group)
    if not items:
        return "no BatchNorm normalises it, so there is no gate to score it"
    drop = set(unit_channels(g.size, g.lcm, [g.units - 1]))
    handles = []
    for bn, idxs, roots in items:
        mask = torch.ones(bn.num_features)
        for j, r in zip(idxs, roots):
            if r in drop:
                mask[j] = 0.0
        handles.append(bn.register_forward_hook(lambda _m, _i, o, mask=mask: o * mask.view(1, -1, 1, 1)))
    x = torch.randn(2, in_chans, input_size, input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        gated = ref(x)
    for h in handles:
        h.remove()
    try:
        prune_units(ref, graph, root, [g.units - 1])
        with torch.no_grad():
            removed = ref(x)
    except Exception as exc:  # torch-pruning could not follow the structure
        return f"torch-pruning cannot remove it ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    diff = float((gated - removed).abs().max())
    if diff > CHECK_TOLERANCE * (1.0 + float(gated.abs().max())):
        return (f"removing a unit differs from zeroing its BN gates (max |diff| {diff:.3g}): a path reads the "
                f"channels without a gate (attention, a cut concatenation)")
    return None


class GraphPruner:
    """Gates, importance and physical removal of the exactly prunable channel groups of any ``NasNet``.

    Call :meth:`accumulate` after every ``loss.backward()``; :meth:`prune_global` removes the least
    important units until the conv+linear MACs reach a target; :meth:`finalize` returns the spec with
    ``channels`` and its freshly built network holding the pruned weights. Pruning is physical at
    every step, so the optimizer must be rebuilt after each :meth:`prune_global` (parameters change).
    """

    def __init__(self, model: nn.Module, *, min_units: int = 1) -> None:
        arch = getattr(model, "arch", None)
        if not isinstance(arch, Arch):
            raise ValueError(f"model: expected a NasNet built by space.build_model, got {type(model).__name__}")
        if isinstance(min_units, bool) or not isinstance(min_units, int) or min_units < 1:
            raise ValueError(f"min_units: must be an integer >= 1, got {min_units!r}")
        self.model, self.arch, self.min_units = model, arch, min_units
        self.in_chans = model.stem[0].in_channels
        self.graph = _quiet_build(model, arch.input_size, self.in_chans)
        groups = channel_groups(model, self.graph)
        self.reasons = {g.root: check_group(model, g.root, input_size=arch.input_size, in_chans=self.in_chans)
                        for g in groups}
        self.lcm = {g.root: g.lcm for g in groups}
        self.full = {g.root: g.size for g in groups}
        self.roots = [g.root for g in groups if self.reasons[g.root] is None]
        if not self.roots:
            raise ValueError("model: no channel group can be pruned ("
                             + "; ".join(f"{r}: {why}" for r, why in self.reasons.items()) + ")")
        self.alive = {r: list(range(self.full[r] // self.lcm[r])) for r in self.roots}  # original unit ids
        self._sum = {r: torch.zeros(len(u), dtype=torch.float64) for r, u in self.alive.items()}
        self.batches = 0
        self._refresh()

    # ------------------------------------------------------------------ importance

    def _refresh(self) -> None:
        """BN items of every prunable group at the current widths (after a physical removal)."""
        self._items = {}
        for r in self.roots:
            conv = self.model.get_submodule(r)
            group = self.graph.get_pruning_group(conv, _prune_out(self.graph, conv),
                                                 idxs=list(range(out_channels(self.graph, conv))))
            units = len(self.alive[r])
            self._items[r] = [(bn, torch.tensor(idxs), torch.tensor(roots) % units)
                              for bn, idxs, roots in _bn_items(group)]

    def accumulate(self) -> None:
        """Add this mini-batch's squared unit contributions (see the module docstring)."""
        for r, items in self._items.items():
            total = torch.zeros(len(self.alive[r]), dtype=torch.float64)
            for bn, idxs, units in items:
                if bn.weight.grad is None:
                    continue
                term = (bn.weight.detach() * bn.weight.grad.detach() + bn.bias.detach() * bn.bias.grad.detach())
                total.index_add_(0, units, term[idxs.to(term.device)].double().cpu())
            self._sum[r] += total.pow(2)
        self.batches += 1

    def scores(self) -> dict[str, torch.Tensor]:
        """Mean importance of every alive unit of every prunable group (by current unit position)."""
        if self.batches == 0:
            raise ValueError("GraphPruner.scores: no mini-batch accumulated yet; call accumulate() after backward()")
        return {r: s / self.batches for r, s in self._sum.items()}

    def reset(self) -> None:
        for s in self._sum.values():
            s.zero_()
        self.batches = 0

    # ------------------------------------------------------------------ removal

    def macs(self) -> int:
        return conv_linear_macs(self.model, input_size=self.arch.input_size, in_chans=self.in_chans)

    def sizes(self) -> dict[str, int]:
        return {r: out_channels(self.graph, self.model.get_submodule(r)) for r in self.full}

    def prune_global(self, target_macs: float) -> int:
        """Remove the globally least important units, one at a time, until the MACs are at most ``target_macs``.

        Groups keep at least ``min_units`` units. Returns the number of units removed.
        """
        scores = self.scores()
        order = sorted((float(v), r, self.alive[r][p]) for r, s in scores.items() for p, v in enumerate(s.tolist()))
        order.reverse()  # pop() takes the least important
        removed = 0
        macs = self.macs()
        while macs > target_macs and order:
            # a chunk of the next least important units: about a third of the channel share that the MACs gap
            # suggests (MACs fall at least linearly with the widths); the MACs converge in a few counts
            alive = sum(len(a) for a in self.alive.values())
            chunk = max(1, int(0.35 * alive * (macs - target_macs) / macs))
            taken: dict[str, list[int]] = {}
            while order and chunk:
                _, r, unit = order.pop()
                if len(self.alive[r]) - len(taken.get(r, ())) <= self.min_units:
                    continue
                taken.setdefault(r, []).append(unit)
                chunk -= 1
            for r, units in taken.items():
                positions = [self.alive[r].index(u) for u in units]
                prune_units(self.model, self.graph, r, positions)
                keep = [p for p in range(len(self.alive[r])) if p not in set(positions)]
                self.alive[r] = [self.alive[r][p] for p in keep]
                self._sum[r] = self._sum[r][keep]
                removed += len(units)
            if not taken:
                break
            macs = self.macs()
        self._refresh()
        return removed

    # ------------------------------------------------------------------ export

    def channels(self) -> dict[str, int]:
        """``{root: kept width}`` of every group that lost channels (the spec's ``channels``)."""
        out = dict(self.arch.channels_kw)
        out.update({r: w for r, w in self.sizes().items() if w != self.full[r]})
        return out

    def finalize(self) -> tuple[Arch, nn.Module]:
        """The pruned spec and a network built from it holding the pruned weights (CPU, model's dtype/mode)."""
        arch = self.arch.replace(channels=self.channels())
        small = build_model(arch, num_classes=self.model.get_classifier().out_features, in_chans=self.in_chans)
        small.load_state_dict({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, strict=True)
        small.to(dtype=next(self.model.parameters()).dtype)
        small.train(self.model.training)
        return arch, small
