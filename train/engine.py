"""The training engine: proxy training, retraining and compression fine-tuning all run through it.

- :class:`Engine` — one optimizer step and one epoch, in the shape of timm's train.py: forward under
  ``torch.autocast`` (:class:`Precision`; inputs in channels_last on request, mixup if given),
  backward (loss-scaled for fp16), the ``after_backward`` hook (on unscaled gradients), timm's
  ``dispatch_clip_grad`` (norm, value or AGC), optimizer step, the ``on_step_end`` hook (e.g. a
  projection of the weights), the scheduler's per-update step, timm's EMA update. The per-step
  losses and hit counts stay on the device until the end of the epoch; then they are summed (over
  ranks too when given ``reduce``).
- :func:`evaluate_accuracy` — top-1 accuracy and mean cross-entropy in eval mode, with the same
  precision and memory format.
- :func:`make_sgd` — SGD with (Nesterov) momentum; no weight decay on 1-D parameters (norm
  scales/shifts and biases), the usual practice since Goyal et al. 2017 (§5.1 of "Bag of Tricks",
  He et al. 2019). Modules may claim their own parameters through ``nas_param_groups()``.
- :func:`make_cosine_scheduler` — per-iteration cosine decay (Loshchilov & Hutter 2017, SGDR without
  restarts) with an optional linear warm-up (Goyal et al. 2017), as a ``LambdaLR``.

A NaN or infinite training loss raises :class:`NonFiniteLossError`; ``Engine.nan_check`` says when:

- ``"step"`` (proxy training, compression): every step's loss is read after its forward and the first
  non-finite one raises before its backward, so the weights stay those of the last finite step (one
  host sync per step);
- ``"epoch"`` (retraining): only the epoch's loss sum is checked, after the ranks' sums are added, so
  every process of a data-parallel run raises alike at the end of the epoch (DDP averages a NaN
  gradient into all replicas; one rank raising alone mid-epoch would leave the others waiting in the
  next all-reduce). No host sync per step.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.scheduler.scheduler import Scheduler as TimmScheduler
from timm.utils import dispatch_clip_grad

from .checks import check_positive_int

ParamGroupsFn = Callable[[nn.Module], list[dict[str, Any]]]
Reduce = Callable[[Sequence[Any]], list[float]]
"""Sums each value over all ranks: ``reduce([tensor_or_number, ...]) -> [float, ...]``."""
Progress = Callable[[int, Callable[[], dict[str, float]]], None]
"""``progress(step, running)`` after every step; ``running()`` (a device sync) gives ``loss``, ``images``,
``seconds`` of this process so far."""

NAN_CHECKS = ("step", "epoch")
CLIP_MODES = ("norm", "value", "agc")
AMP_MODES = ("none", "bf16", "fp16")


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite (the run diverged)."""


def failed_at_run_time(exc: BaseException) -> bool:
    """A ``ValueError`` raised after the inputs were accepted (a loss that turned non-finite, an architecture
    ONNX cannot express): a failure at run time (exit 1, traceback kept), not bad input (exit 2, one line)."""
    from space.onnx_export import OnnxExportError

    return isinstance(exc, (NonFiniteLossError, OnnxExportError))


@dataclass
class Precision:
    """Autocast dtype (``None`` = fp32) and the fp16 ``GradScaler`` for one device type."""

    device_type: str = "cpu"
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> ContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype is not None else nullcontext()


def create_precision(amp: str, device: torch.device) -> Precision:
    """``none`` → fp32; ``bf16`` → bfloat16 autocast; ``fp16`` → float16 autocast with loss scaling."""
    if amp == "none":
        return Precision(device.type, None, None)
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"amp: bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")
        return Precision(device.type, torch.bfloat16, None)
    if amp == "fp16":
        return Precision(device.type, torch.float16, torch.amp.GradScaler(device.type))
    raise ValueError(f"amp: must be one of {', '.join(AMP_MODES)}, got {amp!r}")


@dataclass(kw_only=True, eq=False)
class Engine:
    """Trains ``model`` (what the forward runs through: the bare network, or DDP / ``torch.compile`` around it).

    ``scheduler`` is stepped after every update: a timm scheduler by ``step_update(num_updates)``, a torch
    one by ``step()`` (epoch-wise steps are the caller's). ``loss_fn(logits, target)`` defaults to
    cross-entropy; ``mixup(x, labels) -> (x, soft_target)`` (timm's ``Mixup``) runs before the forward.
    ``ema`` (timm's ``ModelEmaV3``) follows ``ema_source`` (default ``model``). ``after_backward()`` sees
    the gradients before clipping and the step (e.g. Taylor importance); ``on_step_end(loss)`` runs after
    the step. ``num_updates`` counts the optimizer steps taken (set it when resuming).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device | str
    scheduler: Any = None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
    precision: Precision = field(default_factory=Precision)
    channels_last: bool = False
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    grad_clip: float | None = None
    clip_mode: str = "norm"
    ema: Any = None
    ema_source: nn.Module | None = None
    after_backward: Callable[[], None] | None = None
    on_step_end: Callable[[torch.Tensor], None] | None = None
    nan_check: str = "step"
    reduce: Reduce | None = None
    num_updates: int = 0

    def __post_init__(self) -> None:
        if self.nan_check not in NAN_CHECKS:
            raise ValueError(f"nan_check: must be one of {', '.join(NAN_CHECKS)}, got {self.nan_check!r}")
        if self.clip_mode not in CLIP_MODES:
            raise ValueError(f"clip_mode: must be one of {', '.join(CLIP_MODES)}, got {self.clip_mode!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip: must be > 0 or None, got {self.grad_clip!r}")

    def step(self, x: torch.Tensor, labels: torch.Tensor, *, iteration: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """One update on a batch already on the device; returns the detached loss and logits."""
        opt, scaler = self.optimizer, self.precision.scaler
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = labels
        if self.mixup is not None:
            x, target = self.mixup(x, labels)
        with self.precision.autocast():
            logits = self.model(x)
            loss = self.loss_fn(logits, target)
        if self.nan_check == "step":
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(f"non-finite training loss {value} at iteration {iteration}")
        opt.zero_grad(set_to_none=True)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None and (self.after_backward is not None or self.grad_clip is not None):
            scaler.unscale_(opt)
        if self.after_backward is not None:
            self.after_backward()
        if self.grad_clip is not None:
            dispatch_clip_grad(self.model.parameters(), self.grad_clip, mode=self.clip_mode)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        self.num_updates += 1
        loss = loss.detach()
        if self.on_step_end is not None:
            self.on_step_end(loss)
        if isinstance(self.scheduler, TimmScheduler):
            self.scheduler.step_update(num_updates=self.num_updates)
        elif self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.ema_source if self.ema_source is not None else self.model, step=self.num_updates)
        return loss, logits.detach()

    def train_epoch(self, loader: Iterable, *, progress: Progress | None = None) -> dict[str, float]:
        """One pass over ``loader`` in train mode.

        Returns ``loss`` (mean over images), ``acc`` (top-1 fraction against the un-mixed labels, soft
        2-D labels by their argmax), ``images`` (all ranks with ``reduce``) and ``seconds`` (this process).
        The per-step losses and hit counts stay on the device until the end of the epoch.
        """
        self.model.train()
        losses: list[torch.Tensor] = []
        hits: list[torch.Tensor] = []
        sizes: list[int] = []
        start = time.perf_counter()

        def running() -> dict[str, float]:
            seen = sum(sizes)
            return {"loss": _loss_sum(losses, sizes) / max(seen, 1), "images": seen,
                    "seconds": time.perf_counter() - start}

        for x, y in loader:
            x, labels = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            loss, logits = self.step(x, labels, iteration=len(losses))
            losses.append(loss)
            hits.append((logits.argmax(1) == (labels.argmax(1) if labels.ndim == 2 else labels)).sum())
            sizes.append(x.shape[0])
            if progress is not None:
                progress(len(losses), running)
        seconds = time.perf_counter() - start
        correct = torch.stack(hits).sum() if hits else 0
        loss_total, correct_total, images = _sums([_loss_sum(losses, sizes), correct, sum(sizes)], self.reduce)
        if not math.isfinite(loss_total):
            raise NonFiniteLossError(f"non-finite training loss {loss_total} summed over an epoch of {len(losses)} "
                                     f"iterations")
        return {"loss": loss_total / max(images, 1), "acc": correct_total / max(images, 1), "images": int(images),
                "seconds": seconds}


def _loss_sum(losses: list[torch.Tensor], sizes: list[int]) -> float:
    """Σ loss·batch in float64, in step order (one device sync)."""
    total = 0.0
    for value, n in zip(torch.stack(losses).tolist() if losses else [], sizes):
        total += value * n
    return total


def _sums(values: list[Any], reduce: Reduce | None) -> list[float]:
    return reduce(values) if reduce is not None else [float(v) for v in values]


def evaluate_accuracy(model: nn.Module, loader: Iterable, *, device: str | torch.device,
                      precision: Precision | None = None, channels_last: bool = False,
                      reduce: Reduce | None = None) -> dict[str, float]:
    """Top-1 ``acc`` (fraction) and mean cross-entropy ``loss`` of ``model`` in eval mode on ``loader``
    (over every rank's shard with ``reduce``)."""
    was_training = model.training
    model.eval()
    autocast = precision.autocast() if precision is not None else nullcontext()
    seen = 0
    try:
        with torch.inference_mode(), autocast:
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
                correct += (logits.argmax(1) == y).sum()
                seen += x.shape[0]
    finally:
        model.train(was_training)
    loss_total, correct_total, images = _sums([loss_sum, correct, seen], reduce)
    if images == 0:
        raise ValueError("evaluate_accuracy: the loader yielded no images")
    return {"acc": correct_total / images, "loss": loss_total / images}


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
