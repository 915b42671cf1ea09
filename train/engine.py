"""The training engine shared by proxy training and full retraining.

- :func:`train_one_epoch` — one pass of SGD over a loader; stops at the first non-finite loss.
- :func:`evaluate_accuracy` — top-1 accuracy and mean cross-entropy on a loader.
- :func:`make_sgd` — SGD with (Nesterov) momentum; no weight decay on 1-D parameters (norm
  scales/shifts and biases), the usual practice since Goyal et al. 2017 (§5.1 of "Bag of Tricks",
  He et al. 2019). Modules may claim their own parameters through ``nas_param_groups()``.
- :func:`make_cosine_scheduler` — per-iteration cosine decay (Loshchilov & Hutter 2017, SGDR without
  restarts) with an optional linear warm-up (Goyal et al. 2017), as a ``LambdaLR``.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_positive_int

ParamGroupsFn = Callable[[nn.Module], list[dict[str, Any]]]


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (the run diverged)."""


def train_one_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, *,
                    device: str | torch.device, scheduler: Any = None, loss_fn: Callable | None = None,
                    grad_clip: float | None = None, on_step_end: Callable[[], None] | None = None) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader``; ``scheduler.step()`` after every iteration.

    ``on_step_end()`` is called right after every ``optimizer.step()`` (e.g. a projection of the weights).

    Returns ``loss`` (mean over images), ``acc`` (top-1 fraction on the augmented batches, in train
    mode), ``images`` and ``seconds``. Raises :class:`NonFiniteLossError` at the first NaN/inf loss.
    ``loss_fn(logits, y)`` defaults to cross-entropy; soft (2-D) targets are scored by their argmax.
    """
    loss_fn = loss_fn or F.cross_entropy
    model.train()
    start = time.perf_counter()
    loss_sum, correct, seen = 0.0, 0, 0
    for it, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"non-finite training loss {value} at iteration {it}")
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if on_step_end is not None:
            on_step_end()
        if scheduler is not None:
            scheduler.step()
        n = x.shape[0]
        labels = y.argmax(1) if y.ndim == 2 else y
        loss_sum += value * n
        correct += int((logits.detach().argmax(1) == labels).sum())
        seen += n
    return {"loss": loss_sum / max(seen, 1), "acc": correct / max(seen, 1), "images": seen,
            "seconds": time.perf_counter() - start}


def evaluate_accuracy(model: nn.Module, loader: Iterable, *, device: str | torch.device) -> dict[str, float]:
    """Top-1 ``acc`` (fraction) and mean cross-entropy ``loss`` of ``model`` in eval mode on ``loader``."""
    was_training = model.training
    model.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    try:
        with torch.inference_mode():
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(1) == y).sum())
                seen += x.shape[0]
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("evaluate_accuracy: the loader yielded no images")
    return {"acc": correct / seen, "loss": loss_sum / seen}


def nas_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Parameter groups claimed by modules that define ``nas_param_groups(self) -> list[dict]``.

    Each claimed group is ``dict(params=[...], lr_scale=float, weight_decay=float)``; a module
    claims only its own parameters (e.g. BN-init-revisited's γ: ``lr_scale=0.01, weight_decay=0``).
    A parameter claimed twice is an error.
    """
    groups: list[dict[str, Any]] = []
    seen: dict[int, str] = {}
    for name, module in model.named_modules():
        fn = getattr(module, "nas_param_groups", None)
        if not callable(fn):
            continue
        for group in fn():
            unknown = set(group) - {"params", "lr_scale", "weight_decay"}
            if "params" not in group or unknown:
                raise ValueError(f"{name or 'model'}.nas_param_groups(): each group needs 'params' and may set "
                                 f"'lr_scale', 'weight_decay'; got keys {sorted(group)}")
            params = list(group["params"])
            for p in params:
                if id(p) in seen:
                    raise ValueError(f"parameter claimed twice by nas_param_groups(): {seen[id(p)]!r} and "
                                     f"{name or 'model'!r}")
                seen[id(p)] = name or "model"
            groups.append({**group, "params": params})
    return groups


def make_sgd(model: nn.Module, *, lr: float, momentum: float, weight_decay: float, nesterov: bool = True,
             param_groups_fn: ParamGroupsFn | None = nas_param_groups) -> torch.optim.SGD:
    """SGD over three kinds of group: claimed, decayed (≥2-D weights), not decayed (1-D: norm, bias).

    ``param_groups_fn(model)`` returns the claimed groups (default: :func:`nas_param_groups`);
    their ``lr`` is ``lr · lr_scale`` and their ``weight_decay`` their own (default ``weight_decay``).
    Every group keeps its ``lr_scale`` so a ``LambdaLR`` scales all groups alike. Nesterov is only
    used when ``momentum > 0`` (torch rejects it otherwise).
    """
    if not lr > 0:
        raise ValueError(f"lr: must be > 0, got {lr!r}")
    if not 0 <= momentum < 1 or weight_decay < 0:
        raise ValueError(f"momentum must be in [0, 1) and weight_decay >= 0, got {momentum!r}, {weight_decay!r}")
    claimed = param_groups_fn(model) if param_groups_fn is not None else []
    taken = {id(p) for g in claimed for p in g["params"]}
    own = {id(p) for p in model.parameters()}
    if not taken <= own:
        raise ValueError("param_groups_fn returned parameters that are not the model's")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad and id(p) not in taken:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "lr_scale": 1.0, "weight_decay": weight_decay},
              {"params": no_decay, "lr_scale": 1.0, "weight_decay": 0.0}]
    for g in claimed:
        params = [p for p in g["params"] if p.requires_grad]
        groups.append({"params": params, "lr_scale": float(g.get("lr_scale", 1.0)),
                       "weight_decay": float(g.get("weight_decay", weight_decay))})
    groups = [dict(g, lr=lr * g["lr_scale"]) for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def cosine_factor(step: int, *, total_steps: int, warmup_steps: int = 0, min_factor: float = 0.0) -> float:
    """LR multiplier at iteration ``step``: linear warm-up to 1 over ``warmup_steps``, then
    ``min + (1-min)·½(1+cos(π·t))`` with t going from 0 to 1 over the remaining steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_cosine_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0,
                          min_factor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration cosine schedule (step it after every optimizer step) as a ``LambdaLR``."""
    check_positive_int(total_steps, "total_steps")
    check_positive_int(warmup_steps, "warmup_steps", minimum=0)
    if warmup_steps >= total_steps and warmup_steps > 0:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be smaller than total_steps ({total_steps})")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_factor(s, total_steps=total_steps, warmup_steps=warmup_steps,
                                           min_factor=min_factor))
