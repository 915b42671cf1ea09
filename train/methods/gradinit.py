"""GradInit (Zhu, Ni, Xu, Kong, Huang & Goldstein, "GradInit: Learning to Initialize Neural Networks for
Stable and Efficient Training", NeurIPS 2021).

Every trainable tensor θ_i of the network gets a learnable scale α_i (θ_α = α ⊙ θ₀). The scales
solve the paper's problem (Eq. 1/2)::

    min_α  L(S̃; θ_α − η·A[g(S; θ_α)])   s.t.  ‖g(S; θ_α)‖_{p_A} ≤ γ,   α_i ≥ α_lb

where g is the gradient on a batch S, A[g] = g for SGD (p_A = 2) and sign(g) for Adam (its
bias-corrected first step, p_A = 1), and S̃ is half of S plus half a fresh batch (the official
code's default, so the step must generalise beyond the samples it was computed on). Algorithm 1:
each iteration computes g with ``create_graph``; if ‖g‖ > γ it takes a step that lowers ‖g‖ (the
constraint), otherwise one that lowers L(S̃; ·)/η. The scales are optimised by Adam with learning
rate τ (``scale_lr``); each gradient coordinate is clipped to ±``scale_grad_clip`` and the
constraint and objective steps keep separate Adam moments (both as in the official RescaleAdam).
After T iterations the weights become α_i·θ₀,i.

Settings per optimizer family (read in the authors' code, ``zhuchen03/gradinit``): the CIFAR-10 CNN
scripts (``launch/run_gradinit*.sh``, target SGD) use γ = 1 and clip each scale-gradient coordinate at 1;
the IWSLT'14 Transformer (``fairseq/gradinit``, target Adam) keeps the γ = 1000 default of its config
(``fairseq/dataclass/configs.py``), τ = 2.5e-3 and a clip of 1e8 (off). The ℓ1 norm of a gradient sums
|g| over every weight (up to √N times its ℓ2 norm for N weights), so with γ = 1 an Adam target only
ever takes constraint steps. These are the defaults (:data:`FAMILY_DEFAULTS`). The CIFAR scripts also
pass ``--gradinit-normalize-grad``: with an SGD target the step direction is g/‖g‖₂ (so η is the step's
length), the default for SGD here (``normalize_grad``); the official code has no such option for Adam,
where the step is sign(g), and ``normalize_grad=True`` with an Adam-like target is refused.

η·A[g] is the target optimizer's real first step (:func:`first_step`, checked against timm's optimizers
in the tests): plain SGD and heavy-ball momentum move by lr·g, Nesterov SGD (timm's ``sgd``) by
lr·(1+μ)·g, RAdam by lr·g (its first steps are not adapted), Adam/AdamW/Adamax/Adagrad/Adan/LaProp by
lr·sign(g) (bias-corrected m̂/√v̂ = g/|g|). Optimizers whose first step is none of these — LAMB and LARS
(per-layer trust ratio), NovoGrad (per-layer normalisation), Adafactor (factored second moment),
NAdam, AdaBelief, RMSprop (scaled sign), ADOPT (no first update), AdamP/SGDP (projections), Lion,
Muon — are refused with the list of valid ones.

The model is evaluated at θ_α and θ_α − η·A[g] with ``torch.func.functional_call``, so the
objective is differentiated through g(θ_α) as well (second order; the paper's objective).
``first_order=True`` treats the step direction as a constant, as the official code's ``detach()``
does. Which tensors are scaled, as in the official code: every trainable tensor with a non-zero
initial norm (conv/linear weights and biases, norm scales γ and shifts β); the lower bound α_lb
(``alpha_floor``, 0.01) applies to all but biases, whose bound is 0; zero-initialised tensors
(biases, BN β, zero-γ) cannot be rescaled and keep α = 1. Norm layers run in train mode (batch
statistics), dropout is off, and running statistics are restored afterwards.
"""
from __future__ import annotations

import math
import time
from copy import deepcopy
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

INNER_OPTIMIZERS = ("sgd", "adam")
# timm optimizer name → (A, first-step multiplier of lr: "nesterov" = 1+μ, "one" = 1); see the module doc.
FIRST_STEP: dict[str, tuple[str, str]] = {
    **{n: ("sgd", "nesterov") for n in ("sgd", "nesterov", "sgdw", "nesterovw")},
    **{n: ("sgd", "one") for n in ("momentum", "radam", "radamw")},
    **{n: ("adam", "one") for n in ("adam", "adamw", "adamax", "adagrad", "adan", "adanw", "laprop")},
}
# The authors' settings per target family: γ, τ and the scale-gradient clip (module doc).
FAMILY_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"gamma": 1.0, "scale_lr": 1e-2, "scale_grad_clip": 1.0},
    "adam": {"gamma": 1e3, "scale_lr": 2.5e-3, "scale_grad_clip": 1e8},
}
_DROPOUT_NAMES = frozenset({"DropPath", "DropBlock2d"})


def _cycle(loader: Iterable) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError("gradinit: the loader yielded no batches")


def check_options(lr: float, gamma: float, alpha_floor: float, iters: int, inner_optimizer: str, scale_lr: float,
                  scale_grad_clip: float = 1.0) -> None:
    """``ValueError`` naming the option unless every GradInit option is valid."""

    def positive(name: str, v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name}: must be a finite number > 0, got {v!r}")

    positive("gradinit lr (η)", lr)
    positive("gradinit_gamma", gamma)
    positive("gradinit_lr (scale lr τ)", scale_lr)
    positive("gradinit scale_grad_clip", scale_grad_clip)
    if isinstance(alpha_floor, bool) or not isinstance(alpha_floor, (int, float)) or not 0 <= alpha_floor < 1:
        raise ValueError(f"gradinit_min_scale: must be in [0, 1), got {alpha_floor!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"gradinit_iters: must be an integer >= 1, got {iters!r}")
    if inner_optimizer not in INNER_OPTIMIZERS:
        raise ValueError(f"gradinit inner_optimizer: must be one of {', '.join(INNER_OPTIMIZERS)}, got "
                         f"{inner_optimizer!r}")


def _gradinit_modes(model: nn.Module) -> dict[nn.Module, bool]:
    """Train mode everywhere except dropout-like modules; returns the previous modes."""
    saved = {m: m.training for m in model.modules()}
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) or type(m).__name__ in _DROPOUT_NAMES:
            m.eval()
    return saved


def gradinit(model: nn.Module, loader: Iterable, *, lr: float = 0.1, gamma: float | None = None,
             alpha_floor: float = 0.01, iters: int = 100, inner_optimizer: str = "sgd", scale_lr: float | None = None,
             scale_grad_clip: float | None = None, normalize_grad: bool | None = None, first_order: bool = False,
             loss_fn: Callable | None = None, device: str | torch.device | None = None) -> dict[str, Any]:
    """Rescale ``model``'s trainable tensors in place by GradInit scales; return statistics.

    ``lr`` is η, the learning rate of the target optimizer's first step; ``inner_optimizer`` its kind
    (``sgd`` or ``adam``); ``gamma`` the gradient-norm bound γ; ``iters`` T; ``scale_lr`` τ (``gamma``,
    ``scale_lr`` and ``scale_grad_clip`` default to :data:`FAMILY_DEFAULTS` of ``inner_optimizer``);
    ``normalize_grad`` (SGD only; default on for SGD) steps along g/‖g‖₂ instead of g. Batches
    come from ``loader`` (cycled; two per iteration), moved to ``device`` (default: the model's).
    ``loss_fn(logits, y)`` defaults to cross-entropy.

    Returns ``alpha`` ({name: α} for every rescaled tensor), ``alpha_min``/``alpha_max``/``alpha_mean``,
    ``iters``, ``constraint_steps`` (iterations with ‖g‖ > γ), ``init_loss`` (mean L(S; θ_α)),
    ``step_loss`` (mean L(S̃; θ_α − ηA[g]) over objective iterations, NaN if none), ``grad_norm``
    (mean ‖g‖), ``seconds``.
    """
    if inner_optimizer not in INNER_OPTIMIZERS:
        check_options(lr, 1.0, alpha_floor, iters, inner_optimizer, 1.0)
    defaults = FAMILY_DEFAULTS[inner_optimizer]
    gamma = defaults["gamma"] if gamma is None else gamma
    scale_lr = defaults["scale_lr"] if scale_lr is None else scale_lr
    scale_grad_clip = defaults["scale_grad_clip"] if scale_grad_clip is None else scale_grad_clip
    check_options(lr, gamma, alpha_floor, iters, inner_optimizer, scale_lr, scale_grad_clip)
    if normalize_grad and inner_optimizer != "sgd":
        raise ValueError(f"gradinit_normalize_grad: applies to an SGD-family target only (its step is g/|g|); "
                         f"the {inner_optimizer} step is sign(g)")
    normalize = inner_optimizer == "sgd" if normalize_grad is None else bool(normalize_grad)
    loss_fn = loss_fn or F.cross_entropy
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("gradinit: the model has no trainable parameters")
    dev = torch.device(device) if device is not None else named[0][1].device
    init = {n: p.detach().clone() for n, p in named}
    scaled = [n for n, _ in named if bool(init[n].abs().sum() > 0)]
    if not scaled:
        raise ValueError("gradinit: every trainable tensor is zero; there is nothing to rescale")
    floors = torch.tensor([0.0 if n.rsplit(".", 1)[-1] == "bias" else float(alpha_floor) for n in scaled],
                          device=dev)
    alpha = torch.ones(len(scaled), device=dev, requires_grad=True)
    fixed = {n: init[n].clone().requires_grad_(True) for n, _ in named if n not in set(scaled)}
    adam_objective = torch.optim.Adam([alpha], lr=scale_lr)
    adam_constraint = torch.optim.Adam([alpha], lr=scale_lr)  # separate moments, as RescaleAdam keeps
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = _gradinit_modes(model)
    sgd = inner_optimizer == "sgd"
    start = time.perf_counter()
    init_losses, step_losses, gnorms, constraint_steps = [], [], [], 0
    batches = _cycle(loader)
    try:
        with torch.enable_grad():
            for _ in range(iters):
                (xs, ys), (xn, yn) = next(batches), next(batches)
                xs, ys, xn, yn = (t.to(dev, non_blocking=True) for t in (xs, ys, xn, yn))
                theta = {n: alpha[i] * init[n] for i, n in enumerate(scaled)}
                theta.update(fixed)
                loss0 = loss_fn(functional_call(model, theta, (xs,)), ys)
                grads = torch.autograd.grad(loss0, list(theta.values()), create_graph=True, allow_unused=True)
                grads = [torch.zeros_like(v) if g is None else g for g, v in zip(grads, theta.values())]
                if sgd:
                    gnorm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
                else:
                    gnorm = sum(g.abs().sum() for g in grads)
                init_losses.append(float(loss0.detach()))
                gnorms.append(float(gnorm.detach()))
                if gnorms[-1] > gamma:
                    objective, opt = gnorm, adam_constraint
                    constraint_steps += 1
                else:
                    step = [(g.detach() if first_order else g) if sgd else g.sign() for g in grads]
                    if sgd and normalize:
                        norm = gnorm.detach() if first_order else gnorm
                        step = [s / norm for s in step]
                    theta1 = {n: v - lr * s for (n, v), s in zip(theta.items(), step)}
                    half = xs.shape[0] // 2
                    xt = torch.cat([xs[:half], xn[:xs.shape[0] - half]])
                    yt = torch.cat([ys[:half], yn[:xs.shape[0] - half]])
                    loss1 = loss_fn(functional_call(model, theta1, (xt,)), yt)
                    step_losses.append(float(loss1.detach()))
                    objective, opt = loss1 / lr, adam_objective
                if not math.isfinite(float(objective.detach())):
                    raise ValueError(f"gradinit: non-finite objective {float(objective.detach())}; lower gradinit_lr "
                                     f"(τ) or the target lr η")
                (grad_alpha,) = torch.autograd.grad(objective, alpha)
                opt.zero_grad(set_to_none=True)
                alpha.grad = grad_alpha.clamp(-scale_grad_clip, scale_grad_clip)
                opt.step()
                with torch.no_grad():
                    alpha.copy_(torch.maximum(alpha, floors))
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)
        for m, mode in modes.items():
            m.training = mode
    params = dict(named)
    values = alpha.detach().cpu().tolist()
    with torch.no_grad():
        for a, n in zip(values, scaled):
            params[n].copy_(init[n] * a)
    return {"alpha": dict(zip(scaled, values)), "alpha_min": min(values), "alpha_max": max(values),
            "alpha_mean": sum(values) / len(values), "iters": iters, "constraint_steps": constraint_steps,
            "init_loss": sum(init_losses) / len(init_losses),
            "step_loss": sum(step_losses) / len(step_losses) if step_losses else float("nan"),
            "grad_norm": sum(gnorms) / len(gnorms), "seconds": time.perf_counter() - start}


def gradinit_summary(stats: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of :func:`gradinit`'s statistics, prefixed ``gradinit_`` (for logs and checkpoints)."""
    return {f"gradinit_{k}": float(v) for k, v in stats.items() if isinstance(v, (int, float))}


def first_step(optimizer_name: str, momentum: float = 0.9) -> tuple[str, float]:
    """(A, c): the first step of timm optimizer ``optimizer_name`` is c·lr·A[g] (A: ``sgd`` = g, ``adam`` =
    sign g); ``momentum`` is the SGD momentum μ (Nesterov: c = 1 + μ). ``ValueError`` for any other optimizer."""
    key = optimizer_name.strip().lower()
    if key not in FIRST_STEP:
        raise ValueError(f"gradinit: no first-step model for opt {optimizer_name!r}; valid opt with gradinit: "
                         f"{', '.join(sorted(FIRST_STEP))}")
    inner, kind = FIRST_STEP[key]
    return inner, 1.0 + momentum if kind == "nesterov" else 1.0


def inner_optimizer_for(optimizer_name: str) -> str:
    """GradInit's A for a timm optimizer name: ``sgd`` (along g) or ``adam`` (sign step); see :func:`first_step`."""
    return first_step(optimizer_name)[0]


class _PlainBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm of any input rank without cross-process statistics (stands in for a SyncBatchNorm)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        pass


def local_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose ``SyncBatchNorm`` layers are plain BatchNorm (same parameters and buffers)."""
    copy = deepcopy(model)
    for m in list(copy.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.SyncBatchNorm):
                tensors = [*child.parameters(), *child.buffers()]
                bn = _PlainBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats).to(tensors[0].device if tensors else "cpu")
                bn.load_state_dict(child.state_dict())
                bn.train(child.training)
                setattr(m, child_name, bn)
    return copy


def gradinit_once(model: nn.Module, loader: Iterable, *, distributed: bool, is_main: bool,
                  **options: Any) -> dict[str, Any]:
    """:func:`gradinit` run once for all processes: without data parallelism on ``model`` itself; with it,
    only the main process runs it, on a :func:`local_copy` (no SyncBatchNorm collectives, no DDP hooks,
    its own loader shard), and every process then takes its scaled parameters and statistics (broadcasts
    from rank 0; every rank must call this)."""
    if not distributed:
        return gradinit(model, loader, **options)
    import torch.distributed as dist

    stats: dict[str, Any] | None = None
    if is_main:
        local = local_copy(model)
        stats = gradinit(local, loader, **options)
        with torch.no_grad():
            for p, q in zip(model.parameters(), local.parameters()):
                p.copy_(q)
    for p in model.parameters():
        dist.broadcast(p.data, src=0)
    box = [stats]
    dist.broadcast_object_list(box, src=0)
    return box[0]


__all__ = ["FAMILY_DEFAULTS", "FIRST_STEP", "INNER_OPTIMIZERS", "check_options", "first_step", "gradinit",
           "gradinit_once", "gradinit_summary", "inner_optimizer_for", "local_copy"]
