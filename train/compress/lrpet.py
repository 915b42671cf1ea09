"""LRPET: low-rank projection with energy transfer (Guo et al., "Compact Model Training by Low-Rank
Projection with Energy Transfer", IEEE TNNLS 2023, arXiv:2204.05566), and export to factorised convs.

Training alternates SGD epochs with a projection of each conv onto the rank-``r`` matrices
(:class:`LrpetCallback`, :func:`lrpet_project`):

1. *BN rectification* (their §III-D): fold the BatchNorm that directly follows the conv into it,
   ``W' = diag(γ/√(σ²+ε)) · W`` with ``W`` reshaped to ``C_out × C_in·k²``; convs with no BN right
   after them (conv2 of a pre-activation block, every conv of a ``white_conv`` block) use ``W' = W``.
2. *Projection*: truncated SVD ``W' = U Σ Vᵀ → U_r Σ_r V_rᵀ`` (Eckart–Young best rank-r approximation).
3. *Energy transfer* (their Eq. 9 with the discarded values set to zero): scale the kept singular
   values by ``√(Σ_i σ_i² / Σ_{i≤r} σ_i²)`` so ``‖W'‖_F`` is unchanged.
4. Unfold: ``W = diag(√(σ²+ε)/γ) · W'`` (channels with ``γ = 0`` get a zero row).

Export (:func:`export_lowrank`): each projected conv (rank ≤ r) becomes ``v`` = ``√Σ_r V_rᵀ`` as an
``r × C_in × k × k`` conv (stride, padding of the original) followed by ``u`` = ``U_r √Σ_r`` as a 1×1
``C_out × r`` conv — the official code's ``C``/``N`` split — in a ``basic_lowrank`` stage.

Which convs: in ``basic`` networks conv1 and conv2 of every block (the 3×3 convs that hold the compute);
the stem, the 1×1 projection shortcuts and the classifier stay dense (exported as ``basic_lowrank``).
Every other block family (:func:`conv_structure`): every conv inside the stages, 1×1 ones included — in
bottleneck, Ghost and SK blocks the 1×1 convs hold most of the compute, and the paper's projection is
defined for any conv matrix ``C_out × C_in·k²`` (our reading: the paper does not list the layers per
architecture). A grouped conv is G independent matrices ``C_out/G × C_in/G·k²`` (a block-diagonal
weight); each is projected to rank ``r`` on its own and exported as a grouped k×k conv to ``G·r``
channels and a grouped 1×1 conv (our extension for MGIC's and ResNeXt's grouped convs; depthwise convs
never save and stay dense, as do the generative convs of GConv, the stem and the classifier).
Their export is the original spec plus ``ranks`` (:func:`space.channels.apply_ranks`). The BN folded
in step 1 is the BatchNorm2d whose input is that conv's output tensor (found by forward hooks).
A rank is only used where the factorised pair is smaller than the dense conv
(``r·(C_in·k² + C_out) < C_out·C_in·k²``); other convs get rank 0 and are neither projected nor factorised.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
import torch.nn as nn

from space import BLOCKS, Arch, Stage, build_model

from ..retrain.callbacks import Callback
from .redundancy import LayerRedundancy, allocate
from .structure import SUPPORTED_BLOCKS, ConvInfo, Structure, analyse


class ConvStructure:
    """The dense convs of any ``NasNet`` (every block family) with the BN on each output and its positions.

    Offers what the LRPET functions read from :class:`.structure.Structure`: ``arch``, ``block_convs``
    and ``cost()`` (conv+linear MACs and parameters of the dense network).
    """

    def __init__(self, model: nn.Module) -> None:
        from .graph import conv_linear_macs

        arch = getattr(model, "arch", None)
        if not isinstance(arch, Arch):
            raise ValueError(f"model: expected a NasNet built by space.build_model, got {type(model).__name__}")
        self.arch = arch
        names = {id(m): n for n, m in model.named_modules()}
        outputs: dict[int, str] = {}
        follows: dict[str, str] = {}
        hw: dict[str, int] = {}

        alive: list[torch.Tensor] = []  # keeps every conv output referenced, so no later tensor reuses its id

        def conv_hook(m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            alive.append(out)
            outputs[id(out)] = names[id(m)]
            hw[names[id(m)]] = out.shape[-1] * out.shape[-2]

        def bn_hook(m: nn.Module, inp: tuple) -> None:
            conv = outputs.get(id(inp[0]))
            if conv is not None:
                follows.setdefault(conv, names[id(m)])

        handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
        handles += [m.register_forward_pre_hook(bn_hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        was = model.training
        model.eval()
        try:
            p = next(model.parameters())
            with torch.no_grad():
                model(torch.zeros(1, model.stem[0].in_channels, arch.input_size, arch.input_size, device=p.device,
                                  dtype=p.dtype))
        finally:
            model.train(was)
            for h in handles:
                h.remove()
        self.block_convs = [ConvInfo(n, m, follows.get(n), hw[n]) for n, m in model.named_modules()
                            if n.startswith("stages.") and isinstance(m, nn.Conv2d) and n in hw]
        self._cost = {"macs": conv_linear_macs(model, input_size=arch.input_size, in_chans=model.stem[0].in_channels),
                      "params": sum(p.numel() for p in model.parameters())}

    def cost(self) -> dict[str, int]:
        return dict(self._cost)


def conv_structure(model: nn.Module) -> Structure | ConvStructure:
    """:func:`.structure.analyse` for networks of ``basic`` stages, else :class:`ConvStructure`."""
    arch = getattr(model, "arch", None)
    if isinstance(arch, Arch) and not arch.channels and not arch.ranks and \
            all(BLOCKS.entry(s.block).name in SUPPORTED_BLOCKS for s in arch.stages):
        return analyse(model)
    return ConvStructure(model)


def _dims(conv: nn.Conv2d) -> tuple[int, int]:
    """``(C_out/G, C_in/G·k²)``: one group's reshaped weight (the whole weight of an ungrouped conv)."""
    return conv.weight.shape[0] // conv.groups, conv.weight[0].numel()


def factorised_saves(conv: nn.Conv2d, rank: int) -> bool:
    """Whether a rank-``rank`` factorisation (of each group) has fewer weights (and MACs) than the conv."""
    c_out, n = _dims(conv)
    return 0 < rank and rank * (n + c_out) < c_out * n


def _rank(conv: nn.Conv2d, ratio: float) -> int:
    c_out, n = _dims(conv)
    r = max(1, round(ratio * min(c_out, n)))
    return r if factorised_saves(conv, r) else 0


def plan_ranks(structure: Structure, *, rank_ratio: float) -> dict[str, int]:
    """Rank ``max(1, round(rank_ratio · min(C_out, C_in·k²)))`` per block conv (0 where it would not save)."""
    if isinstance(rank_ratio, bool) or not isinstance(rank_ratio, (int, float)) or not 0 < rank_ratio <= 1:
        raise ValueError(f"rank_ratio: must be a number in (0, 1], got {rank_ratio!r}")
    return {c.name: _rank(c.module, float(rank_ratio)) for c in structure.block_convs}


def lowrank_cost(structure: Structure, ranks: Mapping[str, int]) -> dict[str, int]:
    """``{"macs", "params"}`` of the exported network with the given ranks (exact: conv/linear MACs)."""
    cost = structure.cost()
    for c in structure.block_convs:
        r = ranks.get(c.name, 0)
        if r:
            c_out, n = _dims(c.module)
            saved = c.module.groups * (c_out * n - r * (n + c_out))
            cost = {"macs": cost["macs"] - saved * c.hw, "params": cost["params"] - saved}
    return cost


def ranks_for_target(structure: Structure, target: float, *, metric: str = "macs", iters: int = 50) -> dict[str, int]:
    """Uniform ``rank_ratio`` (bisection) whose export has the largest ``cost[metric] <= target``."""
    def cost(ratio: float) -> float:
        return lowrank_cost(structure, plan_ranks(structure, rank_ratio=ratio))[metric]

    lo, hi = 1e-6, 1.0
    if cost(lo) > target:
        raise ValueError(f"target: even rank 1 everywhere costs {cost(lo):.4g} {metric} > target {target:.4g}; "
                         f"the stem, shortcuts and classifier stay dense")
    if cost(hi) <= target:
        return plan_ranks(structure, rank_ratio=hi)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cost(mid) <= target else (lo, mid)
    return plan_ranks(structure, rank_ratio=lo)


def redundancy_ranks(structure: Structure, layers: Mapping[str, LayerRedundancy], target: float, *,
                     metric: str = "macs", max_ratio: float = 0.9) -> dict[str, int]:
    """Per-conv ranks ``round((1 − r_l)·min(C_out, C_in·k²))`` with ratios ``r_l`` from :func:`.redundancy.allocate`."""
    convs = {c.name: c.module for c in structure.block_convs}
    rho = {n: layers[n].rho if n in layers else 0.0 for n in convs}

    def ranks(ratios: Mapping[Any, float]) -> dict[str, int]:
        out = {}
        for n, r in ratios.items():
            rank = max(1, round((1.0 - r) * min(_dims(convs[n]))))
            out[n] = rank if factorised_saves(convs[n], rank) else 0
        return out

    return ranks(allocate(rho, lambda rt: lowrank_cost(structure, ranks(rt))[metric], target, max_ratio=max_ratio))


def _bn_scale(bn: nn.BatchNorm2d | None, c_out: int, device: torch.device) -> torch.Tensor:
    if bn is None:
        return torch.ones(c_out, dtype=torch.float64, device=device)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(c_out, dtype=torch.float64,
                                                                                  device=device)
    return gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)


def project_weight(weight: torch.Tensor, rank: int, scale: torch.Tensor | None = None, *,
                   groups: int = 1) -> torch.Tensor:
    """Steps 1–4 of the module doc on one weight: rank-``rank`` projection of ``diag(scale)·W`` with energy transfer.

    A grouped conv's weight is ``groups`` independent matrices (block-diagonal conv): each group's rows are
    projected on their own, to rank ``rank`` each.
    """
    if groups > 1:
        rows = weight.shape[0] // groups
        parts = [project_weight(weight[g * rows:(g + 1) * rows], rank,
                                None if scale is None else scale[g * rows:(g + 1) * rows]) for g in range(groups)]
        return torch.cat(parts, 0)
    shape, dtype = weight.shape, weight.dtype
    w = weight.detach().reshape(shape[0], -1).double()
    s = torch.ones(shape[0], dtype=torch.float64, device=w.device) if scale is None else scale.double()
    folded = s[:, None] * w
    u, sig, vh = torch.linalg.svd(folded, full_matrices=False)
    kept_energy = float(sig[:rank].pow(2).sum())
    if kept_energy == 0.0:
        return weight.detach().clone()
    sig_r = sig[:rank] * math.sqrt(float(sig.pow(2).sum()) / kept_energy)
    projected = (u[:, :rank] * sig_r) @ vh[:rank]
    inv = torch.where(s.abs() > 1e-12, 1.0 / s, torch.zeros_like(s))
    return (inv[:, None] * projected).reshape(shape).to(dtype)


def lrpet_project(model: nn.Module, ranks: Mapping[str, int] | None = None, *, rank_ratio: float | None = None,
                  structure: Structure | None = None) -> dict[str, int]:
    """Project every block conv of ``model`` in place (module doc, steps 1–4); returns the ranks used.

    Give either ``ranks`` (conv module name → rank, 0 = leave dense) or ``rank_ratio``.
    """
    structure = structure if structure is not None else conv_structure(model)
    if (ranks is None) == (rank_ratio is None):
        raise ValueError("lrpet_project: give exactly one of ranks= and rank_ratio=")
    ranks = dict(ranks) if ranks is not None else plan_ranks(structure, rank_ratio=rank_ratio)
    convs = {c.name: c for c in structure.block_convs}
    unknown = sorted(set(ranks) - set(convs))
    if unknown:
        raise ValueError(f"ranks: {unknown[0]!r} is not a block conv; block convs: {', '.join(convs)}")
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, r in ranks.items():
            if isinstance(r, bool) or not isinstance(r, int) or r < 0:
                raise ValueError(f"ranks[{name!r}]: must be an integer >= 0, got {r!r}")
            if r == 0:
                continue
            c: ConvInfo = convs[name]
            bn = modules[c.bn] if c.bn is not None else None
            scale = _bn_scale(bn, c.module.weight.shape[0], c.module.weight.device)
            c.module.weight.copy_(project_weight(c.module.weight, r, scale, groups=c.module.groups))
    return ranks


class LrpetCallback(Callback):
    """LRPET's epoch-end projection as a retrain callback: ``retrain(..., callbacks=[LrpetCallback(ranks)])``.

    ``on_epoch_end(ctx, row)`` projects ``ctx.model`` (the bare network; EMA weights are not
    projected) after the epoch's test evaluation, so the epoch's logged ``test_acc`` is the
    pre-projection one; ``row["lrpet_projections"]`` counts projections. A bare model works too:
    ``on_epoch_end(model)``. Every rank projects its own (identical) replica under torchrun.
    """

    def __init__(self, ranks: Mapping[str, int]) -> None:
        self.ranks = dict(ranks)
        self.projections = 0

    def on_epoch_end(self, ctx: Any, row: dict[str, Any] | None = None) -> None:
        lrpet_project(ctx if isinstance(ctx, nn.Module) else ctx.model, self.ranks)
        self.projections += 1
        if row is not None:
            row["lrpet_projections"] = self.projections

    def state_dict(self) -> dict[str, Any]:
        return {"ranks": dict(self.ranks), "projections": self.projections}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ranks, self.projections = dict(state["ranks"]), int(state["projections"])


class LrpetFromScratch(LrpetCallback):
    """LRPET training from scratch (``nas retrain --lrpet-target F`` or ``--lrpet-rank R``).

    The paper's point (Guo et al., abstract): a well pre-trained model is not a good starting point for a
    low-rank model, so LRPET alternates SGD epochs with the projection from the first epoch on. Here the
    ranks are planned in ``on_start`` on the freshly initialised network (after GradInit, when both are on)
    — the uniform rank ratio whose factorised export has the largest MACs ``<= target × dense MACs``, or the
    given ratio — and every epoch ends with the projection (:class:`LrpetCallback`). Training starts from
    the ordinary random initialisation, not a projected one: the first projection follows the first epoch
    (our reading of "alternately", as in the prune path after its initial projection). A resumed run takes
    the ranks from its checkpoint. :meth:`final_model` is the factorised ``basic_lowrank`` network, exactly
    equal to the projected dense one; retrain writes it as ``arch.yaml``/``model.pt``. EMA weights are not
    projected (they are saved dense, as ``model_ema.pt``).
    """

    def __init__(self, arch: Arch, *, target: float | None = None, rank_ratio: float | None = None) -> None:
        if (target is None) == (rank_ratio is None):
            raise ValueError("lrpet_target: give lrpet_target or lrpet_rank (exactly one)")
        super().__init__({})
        self.target, self.rank_ratio = target, rank_ratio
        self.dense_cost: dict[str, int] = {}

    def on_start(self, ctx: Any) -> None:
        structure = conv_structure(ctx.model)
        self.dense_cost = structure.cost()
        if not self.ranks:  # a resumed run restored its ranks
            self.ranks = (plan_ranks(structure, rank_ratio=self.rank_ratio) if self.rank_ratio is not None else
                          ranks_for_target(structure, self.target * self.dense_cost["macs"]))
        cost = lowrank_cost(structure, self.ranks)
        ctx.out(f"LRPET from scratch: ranks {sorted(set(self.ranks.values()))}, MACs {cost['macs']:,} of "
                f"{self.dense_cost['macs']:,} ({cost['macs'] / self.dense_cost['macs']:.3f})")

    def final_model(self, ctx: Any) -> tuple[Arch, nn.Module]:
        arch, small = export_lowrank(ctx.model, self.ranks)
        return arch.replace(input_size=ctx.arch.input_size), small


def lowrank_arch(structure: Structure, ranks: Mapping[str, int]) -> Arch:
    """The spec with every stage as ``basic_lowrank`` carrying its blocks' inner widths and ranks."""
    arch = structure.arch
    convs = {c.name: c.module for c in structure.block_convs}
    stages = []
    for s, stage in enumerate(arch.stages):
        kw = stage.block_kw
        mids = [convs[f"stages.{s}.{b}.conv1"].out_channels for b in range(stage.depth)]
        rk = [ranks.get(f"stages.{s}.{b}.conv{i}", 0) for b in range(stage.depth) for i in (1, 2)]
        args: dict = {"mids": mids, "ranks": rk}
        if structure.projections[s]:
            args["proj"] = True
        if kw.get("dropout", 0.0):
            args["dropout"] = kw["dropout"]
        stages.append(Stage(block="basic_lowrank", depth=stage.depth, width=stage.width, stride=stage.stride,
                            norm=stage.norm, attention=stage.attention, act=stage.act, order=stage.order,
                            block_args=args, norm_args=stage.norm_args, attn_args=stage.attn_args))
    return Arch(stem=arch.stem, stages=tuple(stages), head=arch.head, input_size=arch.input_size)


def factorise(weight: torch.Tensor, rank: int, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(v, u)`` with ``v``: ``rank×C_in×k×k`` = ``√Σ_r V_rᵀ``, ``u``: ``C_out×rank×1×1`` = ``U_r √Σ_r``.

    ``groups > 1``: each group factorised on its own; ``v`` is ``G·rank×C_in/G×k×k`` and ``u`` is
    ``C_out×rank×1×1`` (both grouped convs with ``G`` groups, group g's factors in block g).
    """
    if groups > 1:
        rows = weight.shape[0] // groups
        pairs = [factorise(weight[g * rows:(g + 1) * rows], rank) for g in range(groups)]
        return torch.cat([v for v, _ in pairs], 0), torch.cat([u for _, u in pairs], 0)
    c_out = weight.shape[0]
    u, sig, vh = torch.linalg.svd(weight.detach().reshape(c_out, -1).double(), full_matrices=False)
    root = sig[:rank].sqrt()
    v = (root[:, None] * vh[:rank]).reshape(rank, *weight.shape[1:])
    return v.to(weight.dtype), (u[:, :rank] * root).reshape(c_out, rank, 1, 1).to(weight.dtype)


def export_lowrank(model: nn.Module, ranks: Mapping[str, int], *,
                   structure: Structure | ConvStructure | None = None) -> tuple[Arch, nn.Module]:
    """``(arch, model)`` with each block conv of rank ``r > 0`` factorised; exact when the weights are projected."""
    structure = structure if structure is not None else conv_structure(model)
    if isinstance(structure, Structure):
        arch = lowrank_arch(structure, ranks)
    else:
        arch = structure.arch.replace(ranks={**structure.arch.ranks_kw, **{n: r for n, r in ranks.items() if r}})
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    groups = {c.name: c.module.groups for c in structure.block_convs}
    for name, r in ranks.items():
        if r:
            v, u = factorise(state.pop(f"{name}.weight"), r, groups.get(name, 1))
            state[f"{name}.v.weight"], state[f"{name}.u.weight"] = v, u
            if f"{name}.bias" in state:
                state[f"{name}.u.bias"] = state.pop(f"{name}.bias")
    small = build_model(arch, num_classes=model.get_classifier().out_features, in_chans=model.stem[0].in_channels)
    small.load_state_dict(state, strict=True)
    small.to(dtype=next(model.parameters()).dtype)
    small.train(model.training)
    return arch, small
