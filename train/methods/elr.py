"""Effective learning rate of scale-invariant weights (Kodryan, Lobacheva, Nakhodnov & Vetrov, "Training
Scale-Invariant Neural Networks on the Sphere Can Happen in Three Regimes", NeurIPS 2022).

A weight w is scale-invariant (SI) when the network function does not change as w → c·w (c > 0):
a convolution whose output goes straight into a normaliser (BatchNorm in train mode, GroupNorm,
LayerNorm). Its gradient is then orthogonal to w and shrinks like 1/‖w‖, so a step of size η moves
w's *direction* by η/‖w‖²: the effective learning rate (ELR, §2 of the paper). The paper treats
the whole SI parameter set as one point on a sphere: ELR = η / ‖w_SI‖² with ‖w_SI‖² summed over
every SI tensor. Its fixed-ELR experiments train on the sphere of fixed radius ρ: after each
optimizer step all SI weights are projected back, w ← w · ρ/‖w_SI‖, and get no weight decay.

The ELR depends on the optimizer (:func:`elr_model`): the step on the unit sphere is ELR times the
unit-sphere gradient ∇_u L = ‖w‖·∇_w L (SGD family) or times the tangential part of the normalised
step m̂/(√v̂+ε) (Adam family):

- plain SGD: lr/‖w‖² (van Laarhoven 2017; Arora, Li & Lyu 2019);
- SGD with momentum μ (heavy ball or Nesterov, dampening d): a slowly turning gradient is applied
  (1−d)/(1−μ) times in the steady state (Nesterov: 1/(1−μ)), so lr·(1−d)/((1−μ)‖w‖²);
- Adam, AdamW, Adamax, NAdam, RAdam: the step m̂/(√v̂+ε) does not scale with the gradient, so the
  angular step is lr/‖w‖ times it (Roburin et al. 2020, "Spherical perspective on learning with
  normalization layers"; Kodryan et al. 2022 §2 for the SGD form).

Other optimizers (LAMB/LARS trust ratios, Lion, NovoGrad, ...) have no model here and are refused
(:data:`ELR_OPTIMIZERS` lists the valid timm names). On the fixed sphere every supported family has a
constant ELR (ρ fixed), so ``fixed`` mode supports the same optimizers.

- :func:`find_scale_invariant` — structural detection from the autograd graph of one forward pass.
- :class:`ElrTracker` — ``log(lr)``: aggregate and per-layer ELR; ``on_epoch_end(epoch, model, optimizer)``.
- :class:`FixedElr` — ``after_step()``: the projection; ``on_step_end(model, optimizer)``.
- :func:`si_param_groups_fn` — a ``param_groups_fn`` for :func:`train.make_sgd` that turns off
  weight decay on the SI weights.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn
from torch.nn.modules.conv import _ConvNd

from ..engine import ParamGroupsFn, nas_param_groups

# Autograd nodes of normalisers whose statistics are taken per channel: they also remove a conv bias.
# (Detection runs in train mode, so BatchNorm nodes here use batch statistics; the eval-only
# ``NativeBatchNormLegitNoTrainingBackward0``/``BatchNormNoUpdateBackward0`` are deliberately absent.)
PER_CHANNEL_NORM_NODES = frozenset({
    "NativeBatchNormBackward0", "CudnnBatchNormBackward0", "MiopenBatchNormBackward0", "BatchNormWithUpdateBackward0",
    "NativeBatchNormLegitBackward0", "NativeBatchNormLegitBackward1", "SyncBatchNormBackward"})
# Every recognised normaliser: (x − mean)/std (or x/rms) over any grouping is invariant to x → c·x.
NORM_NODES = PER_CHANNEL_NORM_NODES | {"NativeGroupNormBackward0", "NativeLayerNormBackward0", "FusedRmsNormBackward0"}
# Reshapes that commute with a global scale (followed only for a conv without bias).
VIEW_NODES = frozenset({"ViewBackward0", "UnsafeViewBackward0", "ReshapeAliasBackward0", "PermuteBackward0",
                        "TransposeBackward0", "CloneBackward0"})


def _node_name(node: Any) -> str:
    return node.name().rsplit("::", 1)[-1]


def _users(roots: Iterable[Any]) -> dict[Any, list[tuple[Any, int]]]:
    """For every autograd node reachable from ``roots``: the (node, input slot) pairs that consume it."""
    users: dict[Any, list[tuple[Any, int]]] = defaultdict(list)
    seen, stack = set(), [r for r in roots if r is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for slot, (child, _) in enumerate(node.next_functions):
            if child is not None:
                users[child].append((node, slot))
                stack.append(child)
    return users


def _only_normalised(node: Any, users: dict[Any, list[tuple[Any, int]]], *, has_bias: bool) -> bool:
    """Whether every consumer of ``node`` is the data input of a normaliser (through views if no bias)."""
    consumers = users.get(node, [])
    if not consumers:
        return False
    for user, slot in consumers:
        name = _node_name(user)
        if name in (PER_CHANNEL_NORM_NODES if has_bias else NORM_NODES):
            if slot != 0:
                return False
        elif name in VIEW_NODES and not has_bias:
            if not _only_normalised(user, users, has_bias=False):
                return False
        else:
            return False
    return True


def find_scale_invariant(model: nn.Module, example_input: torch.Tensor) -> list[str]:
    """Names of the conv weights that feed only normalisers, in ``model.named_parameters()`` order.

    One train-mode forward pass of ``example_input`` (≥ 2 samples for BatchNorm) is traced through
    its autograd graph: a conv weight is scale-invariant when it is used by that conv only, and every
    consumer of every output of the conv is the data input of a BatchNorm/GroupNorm/LayerNorm (through
    pure reshapes if the conv has no bias; a bias is allowed before BatchNorm only, which subtracts
    it per channel). Anything else — a residual sum, an activation, a custom normaliser built from
    elementary ops — makes the weight non-SI: the detection errs towards "not SI". BatchNorm is SI
    only in train mode (eval mode uses running statistics). The model's mode, running statistics,
    parameters and the RNG state (dropout in the pass) are left as they were.
    """
    modes = {m: m.training for m in model.modules()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    names = {id(p): n for n, p in model.named_parameters()}
    calls: dict[str, list[Any]] = defaultdict(list)
    convs = {name: m for name, m in model.named_modules()
             if isinstance(m, _ConvNd) and isinstance(m.weight, nn.Parameter) and m.weight.requires_grad}

    def record(name: str) -> Callable:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                calls[name].append(output.grad_fn)
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in convs.items()]
    cuda = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
    try:
        model.train()
        with torch.enable_grad(), torch.random.fork_rng(devices=cuda):  # dropout in the pass draws nothing
            out = model(example_input)
        outputs = [out] if isinstance(out, torch.Tensor) else [t for t in _flatten(out) if isinstance(t, torch.Tensor)]
        users = _users(t.grad_fn for t in outputs)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
    found = set()
    for name, nodes in calls.items():
        module = convs[name]
        if not nodes or any(n is None or _node_name(n) != "ConvolutionBackward0" for n in nodes):
            continue
        weight_nodes = {n.next_functions[1][0] for n in nodes}
        if len(weight_nodes) != 1 or getattr(next(iter(weight_nodes)), "variable", None) is not module.weight:
            continue  # the weight reaches the conv through some transform (e.g. weight standardisation)
        if any(user not in nodes for user, _ in users.get(next(iter(weight_nodes)), [])):
            continue  # the same weight is also used elsewhere
        has_bias = module.bias is not None
        if all(_only_normalised(n, users, has_bias=has_bias) for n in nodes):
            found.add(names[id(module.weight)])
    return [n for n, _ in model.named_parameters() if n in found]


def _flatten(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _flatten(v)]
    if isinstance(obj, (list, tuple)):
        return [x for v in obj for x in _flatten(v)]
    return [obj]


def _resolve(model: nn.Module, si_params: Sequence[str]) -> dict[str, nn.Parameter]:
    params = dict(model.named_parameters())
    unknown = [n for n in si_params if n not in params]
    if unknown:
        raise ValueError(f"si_params: {unknown[:3]} are not parameters of the model")
    return {n: params[n] for n in si_params}


# timm optimizer names with an ELR model (module doc); torch/timm classes they build.
SGD_ELR = ("momentum", "nesterov", "nesterovw", "sgd", "sgdw")
ADAM_ELR = ("adam", "adamax", "adamw", "nadam", "radam", "radamw")
ELR_OPTIMIZERS = SGD_ELR + ADAM_ELR
_SGD_CLASSES = frozenset({"SGD", "SGDW"})
_ADAM_CLASSES = frozenset({"Adam", "AdamW", "AdamWLegacy", "Adamax", "NAdam", "NAdamLegacy", "RAdam", "RAdamLegacy"})


def check_elr_optimizer(optimizer_name: str) -> None:
    """``ValueError`` naming ``elr`` unless timm optimizer ``optimizer_name`` has an ELR model."""
    if optimizer_name.strip().lower() not in ELR_OPTIMIZERS:
        raise ValueError(f"elr: no effective-learning-rate model for opt {optimizer_name!r}; valid opt with elr: "
                         f"{', '.join(sorted(ELR_OPTIMIZERS))}")


def elr_model(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> tuple[float, int]:
    """(c, k) with ELR = c·lr/‖w‖^k for the weights of ``group`` of ``optimizer`` (module doc)."""
    kind = type(optimizer).__name__
    if kind in _SGD_CLASSES:
        mu, damp = float(group.get("momentum", 0.0)), float(group.get("dampening", 0.0))
        if mu == 0:
            return 1.0, 2
        return (1.0 if group.get("nesterov") else 1.0 - damp) / (1.0 - mu), 2
    if kind in _ADAM_CLASSES:
        return 1.0, 1
    raise ValueError(f"elr: no effective-learning-rate model for optimizer {kind}; valid: SGD (momentum, Nesterov) "
                     f"and {', '.join(sorted(_ADAM_CLASSES))}")


def _si_group(optimizer: torch.optim.Optimizer, params: Iterable[nn.Parameter]) -> dict[str, Any]:
    """The optimizer group of the SI parameters with the largest lr."""
    ids = {id(p) for p in params}
    groups = [g for g in optimizer.param_groups if any(id(p) in ids for p in g["params"])]
    if not groups:
        raise ValueError("the optimizer holds none of the scale-invariant parameters")
    return max(groups, key=lambda g: g["lr"])


class ElrTracker:
    """Logs the effective learning rate c·η/‖w‖^k of the SI weights (module doc; :func:`elr_model`).

    ``log(lr, factor=c, power=k)`` returns ``elr`` = c·lr / (Σ‖w_i‖²)^{k/2} over the whole SI set,
    ``si_norm`` = (Σ‖w_i‖²)^½, and ``elr/<name>`` = c·lr / ‖w_i‖^k per SI tensor (with ``per_layer``);
    the defaults (c = 1, k = 2) are plain SGD. Every call is appended to ``history``.
    """

    def __init__(self, model: nn.Module, si_params: Sequence[str], *, per_layer: bool = True) -> None:
        self.params = _resolve(model, si_params)
        self.per_layer = per_layer
        self.history: list[dict[str, float]] = []

    def sq_norms(self) -> dict[str, float]:
        with torch.no_grad():
            return {n: float(p.detach().float().pow(2).sum()) for n, p in self.params.items()}

    def log(self, lr: float, *, factor: float = 1.0, power: int = 2) -> dict[str, float]:
        if not self.params:
            return {}
        sq = self.sq_norms()
        total = sum(sq.values())
        row = {"elr": factor * lr / total ** (power / 2), "si_norm": math.sqrt(total)}
        if self.per_layer:
            row.update({f"elr/{n}": factor * lr / v ** (power / 2) for n, v in sq.items()})
        self.history.append(row)
        return row

    def on_epoch_end(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """``log`` for the SI parameters' optimizer group (the largest lr if they differ) and its optimizer."""
        if not self.params:
            return {}
        group = _si_group(optimizer, self.params.values())
        factor, power = elr_model(optimizer, group)
        return self.log(group["lr"], factor=factor, power=power)


class FixedElr:
    """Keeps the SI weights on the sphere ‖w_SI‖ = ρ (Kodryan et al. 2022, fixed-ELR training).

    ``radius`` ρ defaults to the SI weights' total norm at construction (build it after any
    re-initialisation such as GradInit). ``after_step()`` rescales every SI tensor by ρ/‖w_SI‖
    (call it after each optimizer step), so the ELR stays c·lr/ρ^k (:meth:`elr`). Give the SI weights
    no weight decay (:func:`si_param_groups_fn`), as in the paper.
    """

    def __init__(self, model: nn.Module, si_params: Sequence[str], *, radius: float | None = None) -> None:
        self.params = _resolve(model, si_params)
        if not self.params:
            raise ValueError("elr: fixed mode needs scale-invariant weights and the model has none "
                             "(no conv feeds a BatchNorm/GroupNorm/LayerNorm directly)")
        if radius is not None and not (isinstance(radius, (int, float)) and radius > 0 and math.isfinite(radius)):
            raise ValueError(f"elr_radius: must be a finite number > 0, got {radius!r}")
        self.radius = float(radius) if radius is not None else self.norm()

    def norm(self) -> float:
        with torch.no_grad():
            return math.sqrt(sum(float(p.detach().float().pow(2).sum()) for p in self.params.values()))

    def elr(self, lr: float, optimizer: torch.optim.Optimizer | None = None) -> float:
        """The constant ELR on the sphere for ``optimizer``'s SI group (plain SGD without one)."""
        if optimizer is None:
            return lr / self.radius ** 2
        factor, power = elr_model(optimizer, _si_group(optimizer, self.params.values()))
        return factor * lr / self.radius ** power

    def after_step(self) -> None:
        """Project the SI weights back onto the sphere of radius ρ."""
        with torch.no_grad():
            total = torch.sqrt(sum(p.detach().float().pow(2).sum() for p in self.params.values()))
            scale = self.radius / total
            for p in self.params.values():
                p.mul_(scale.to(p.dtype))

    def on_step_end(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.after_step()


def si_param_groups_fn(si_params: Sequence[str], *, base: ParamGroupsFn | None = nas_param_groups) -> ParamGroupsFn:
    """A ``param_groups_fn`` for :func:`train.make_sgd`: ``base``'s claimed groups, SI weights without decay.

    An SI weight that ``base`` claims keeps its group's ``lr_scale`` with ``weight_decay`` 0; every
    other SI weight joins a new group ``lr_scale`` 1, ``weight_decay`` 0.
    """
    wanted = set(si_params)

    def groups(model: nn.Module) -> list[dict[str, Any]]:
        si = _resolve(model, sorted(wanted))
        si_ids = {id(p) for p in si.values()}
        out: list[dict[str, Any]] = []
        claimed: set[int] = set()
        for g in (base(model) if base is not None else []):
            keep = [p for p in g["params"] if id(p) not in si_ids]
            moved = [p for p in g["params"] if id(p) in si_ids]
            claimed.update(id(p) for p in moved)
            if keep:
                out.append({**g, "params": keep})
            if moved:
                out.append({**g, "params": moved, "weight_decay": 0.0})
        rest = [p for n, p in model.named_parameters() if n in wanted and id(p) not in claimed]
        if rest:
            out.append({"params": rest, "lr_scale": 1.0, "weight_decay": 0.0})
        return out

    return groups
