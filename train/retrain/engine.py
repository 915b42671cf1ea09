"""One training epoch and one evaluation, with AMP, loss scaling, clipping, EMA and data parallelism.

The step is timm train.py's: forward under ``torch.autocast``, backward (scaled for fp16), optional
gradient clipping (timm's ``dispatch_clip_grad``: norm, value or AGC; after unscaling), optimizer
step, ``scheduler.step_update(num_updates)``, EMA update. Running sums stay on the device, so a
step never waits for the GPU except when progress is shown; they are summed over ranks at the
end of the epoch. A non-finite epoch loss raises :class:`train.NonFiniteLossError` on every
rank alike (DDP averages a NaN gradient into all ranks).
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.utils import dispatch_clip_grad

from train import NonFiniteLossError

from .callbacks import Callback, RetrainContext
from .distributed import DistInfo, all_reduce_sums
from .logs import StepProgress
from .parts import Precision


def optimizer_step(ctx: RetrainContext, loss: torch.Tensor) -> None:
    """Backward ``loss`` and take one optimizer step (scaled for fp16, clipped if configured)."""
    opt, scaler, cfg = ctx.optimizer, ctx.precision.scaler, ctx.cfg
    opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    if cfg.grad_clip is not None:
        if scaler is not None:
            scaler.unscale_(opt)
        dispatch_clip_grad(ctx.model.parameters(), cfg.grad_clip, mode=cfg.clip_mode)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The scheduled base lr (the first group's lr divided by its ``lr_scale``)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_scale", 1.0)


def train_epoch(ctx: RetrainContext, *, loss_fn: nn.Module, mixup: Any = None, channels_last: bool = False,
                callbacks: Sequence[Callback] = ()) -> dict[str, float]:
    """Train ``ctx.train_model`` for one pass of ``ctx.train_loader``; metrics summed over ranks.

    Returns ``loss`` (mean over images), ``acc`` (top-1 against the un-mixed labels), ``images`` (all
    ranks), ``seconds`` and ``images_per_s``.
    """
    model, device, info = ctx.train_model, ctx.info.device, ctx.info
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen, total = 0, len(ctx.train_loader)
    start = time.perf_counter()

    def stats() -> str:
        rate = seen * info.world_size / max(time.perf_counter() - start, 1e-9)
        return (f"loss {float(loss_sum) / max(seen, 1):.4f}  lr {current_lr(ctx.optimizer):.4g}  "
                f"{rate:,.0f} img/s")

    with StepProgress(total=total, epoch=ctx.epoch + 1, epochs=ctx.cfg.epochs, interval=ctx.cfg.log_interval,
                      out=ctx.out, enabled=info.is_main) as progress:
        for step, (x, y) in enumerate(ctx.train_loader, 1):
            x, labels = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            target = labels
            if mixup is not None:
                x, target = mixup(x, labels)
            with ctx.precision.autocast():
                logits = model(x)
                loss = loss_fn(logits, target)
            optimizer_step(ctx, loss)
            ctx.num_updates += 1
            ctx.scheduler.step_update(num_updates=ctx.num_updates)
            if ctx.ema is not None:
                ctx.ema.update(ctx.model, step=ctx.num_updates)
            loss_sum += loss.detach().double() * x.shape[0]
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += x.shape[0]
            for cb in callbacks:
                cb.on_step_end(ctx, loss.detach())
            progress.update(step, stats)
    ctx.scheduler.step(ctx.epoch + 1)
    seconds = time.perf_counter() - start
    loss_total, correct_total, images = all_reduce_sums([loss_sum, correct, seen], info)
    seconds = max(all_reduce_sums([seconds], info)[0] / info.world_size, 1e-9)
    if not math.isfinite(loss_total):
        raise NonFiniteLossError(f"non-finite training loss in epoch {ctx.epoch + 1}")
    return {"loss": loss_total / max(images, 1), "acc": correct_total / max(images, 1), "images": images,
            "seconds": seconds, "images_per_s": images / seconds}


def evaluate(model: nn.Module, loader: Iterable, *, info: DistInfo, precision: Precision,
             channels_last: bool = False) -> dict[str, float]:
    """Top-1 ``acc`` and mean cross-entropy ``loss`` over every rank's shard of the test split."""
    was_training = model.training
    model.eval()
    device = info.device
    seen = 0
    try:
        with torch.inference_mode(), precision.autocast():
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
    loss_total, correct_total, images = all_reduce_sums([loss_sum, correct, seen], info)
    if images == 0:
        raise ValueError("evaluate: the test loader yielded no images")
    return {"acc": correct_total / images, "loss": loss_total / images}
