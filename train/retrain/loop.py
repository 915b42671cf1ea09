"""``retrain(arch, cfg, out_dir=...)``: train an architecture from scratch on the whole training split.

Per epoch: train (:func:`train_epoch`: one epoch of :class:`train.Engine` with this run's parts),
average BN statistics over ranks (timm's ``distribute_bn``), evaluate on the test split (and the EMA
weights), log, checkpoint. A non-finite training loss raises :class:`train.NonFiniteLossError` at the
end of its epoch, on every rank alike (the engine's ``nan_check="epoch"``).
At the end rank 0 writes ``model.pt`` (``model_ema.pt``), ``arch.yaml``, ``metrics.json`` and, with ``onnx``,
``model.onnx`` (:mod:`space.onnx_export`).
The model is created through timm (``timm.create_model("nas_arch", arch=...)``), so the saved
weights load back the same way. Seeds: the weights from ``seed``; the per-rank RNGs (dropout,
mixup) from ``seed + rank``; data order and augmentation from ``(seed, epoch)``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import timm
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from space import Arch, build_model
from train.engine import Engine, evaluate_accuracy

from .callbacks import Callback, RetrainContext
from .checkpoint import CHECKPOINT, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import RetrainConfig
from .distributed import DistInfo, all_reduce_sums, gather_objects, init_distributed, shutdown
from .loader import make_eval_loader, make_train_loader
from .logs import RunLog, StepProgress
from .parts import create_ema, create_loss, create_optimizer, create_precision, create_scheduler, param_groups


def retrain(arch: Arch, cfg: RetrainConfig, *, out_dir: Path, resume: bool = False,
            out: Callable[[str], None] = print, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``arch`` for ``cfg.epochs`` epochs into ``out_dir``; return the final metrics (all ranks).

    Under ``torchrun`` every process calls this; it joins the process group itself. ``resume``
    continues from ``out_dir/checkpoint.pt`` exactly (same settings and world size required);
    without it an existing checkpoint is an error rather than silently overwritten. The training
    methods ``cfg`` turns on (``gradinit``, ``lr_rule``, ``elr``) run as callbacks before ``callbacks``.
    """
    from .methods import method_callbacks

    callbacks = [*method_callbacks(cfg.methods), *_lrpet_callbacks(arch, cfg), *callbacks]
    info = init_distributed(cfg.device)
    try:
        for cb in callbacks:
            cfg = cb.configure(cfg, world_size=info.world_size)
        return _run(arch, cfg.check(), info, out_dir=Path(out_dir), resume=resume,
                    out=out if info.is_main else (lambda s: None), callbacks=list(callbacks))
    finally:
        shutdown(info)


def _run(arch: Arch, cfg: RetrainConfig, info: DistInfo, *, out_dir: Path, resume: bool, out: Callable[[str], None],
         callbacks: list[Callback]) -> dict[str, Any]:
    from timm.utils import distribute_bn

    from train import load_dataset

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ckpt_path = out_dir / CHECKPOINT
    if not resume and ckpt_path.exists():
        raise ValueError(f"--out: {out_dir} already holds a checkpoint; pass --resume to continue it or choose "
                         f"another folder")
    saved = load_checkpoint(ckpt_path) if resume else None
    data = load_dataset(cfg.data, data_dir=cfg.data_dir, image_size=cfg.image_size)
    if arch.input_size != data.input_size:
        arch = arch.replace(input_size=data.input_size)
    if saved is not None:
        _check_resumable(saved, arch, cfg, info)
    ctx, channels_last = _build(arch, cfg, data, info, out_dir=out_dir, out=out, callbacks=callbacks)
    if saved is not None:
        _restore(ctx, saved, callbacks)
        out(f"resumed from epoch {ctx.epoch} of {cfg.epochs}")
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir, enabled=info.is_main, tensorboard=cfg.tensorboard,
                 resume_epoch=ctx.epoch if saved is not None else None)
    loss_fn, mixup = create_loss(cfg, num_classes=data.num_classes)
    eval_loader = make_eval_loader(data, batch_size=cfg.eval_batch_size, info=info, workers=cfg.workers)
    plural = "s" if cfg.epochs > 1 else ""
    out(f"retrain {arch.arch_id}: {cfg.epochs} epoch{plural} of {len(ctx.train_loader)} steps, global batch "
        f"{cfg.batch_size * info.world_size} ({info.world_size} process{'es' if info.distributed else ''} on "
        f"{info.device.type}), amp {cfg.amp}, opt {cfg.opt}, sched {cfg.sched}")
    for cb in callbacks:
        cb.on_start(ctx)
    try:
        for epoch in range(ctx.epoch, cfg.epochs):
            for cb in callbacks:
                cb.on_epoch_start(ctx)
            _set_epoch(ctx.train_loader, epoch)
            tr = train_epoch(ctx, loss_fn=loss_fn, mixup=mixup, channels_last=channels_last, callbacks=callbacks)
            if info.distributed:
                distribute_bn(ctx.model, info.world_size, reduce=True)
            row = _evaluate_row(ctx, tr, eval_loader, channels_last)
            for cb in callbacks:
                cb.on_epoch_end(ctx, row)
            ctx.epoch = epoch + 1
            ctx.history.append(row)
            _save(ctx, ckpt_path, callbacks)
            log.epoch(row, ctx.history)
            out(_epoch_line(row, cfg.epochs))
    finally:
        log.close()
    return _finish(ctx, callbacks, eval_loader, channels_last)


def _lrpet_callbacks(arch: Arch, cfg: RetrainConfig) -> list[Callback]:
    """LRPET from scratch when ``lrpet_target`` or ``lrpet_rank`` is set (``train.compress.lrpet``)."""
    if not cfg.lrpet:
        return []
    from train.compress.lrpet import LrpetFromScratch

    return [LrpetFromScratch(arch, target=cfg.lrpet_target, rank_ratio=cfg.lrpet_rank)]


def _build(arch: Arch, cfg: RetrainConfig, data: Any, info: DistInfo, *, out_dir: Path,
           out: Callable[[str], None], callbacks: Sequence[Callback] = ()) -> tuple[RetrainContext, bool]:
    device = info.device
    torch.manual_seed(cfg.seed)
    model = timm.create_model("nas_arch", arch=arch, num_classes=data.num_classes, in_chans=data.in_chans)
    # Groups before SyncBN (it drops nas_param_groups()); the callbacks' claims see the bare model on the CPU.
    example = torch.zeros(2, data.in_chans, arch.input_size, arch.input_size)
    claims = [g for cb in callbacks for g in cb.param_claims(model, example)]
    groups = param_groups(model, weight_decay=cfg.weight_decay, extra_claims=claims)
    if cfg.sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn: SyncBatchNorm needs CUDA; on the CPU use a norm without batch statistics "
                             "(gn) or accept per-process BN statistics")
        model = timm.layers.convert_sync_batchnorm(model)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = create_optimizer(groups, cfg)
    for seed_fn in (torch.manual_seed, np.random.seed, random.seed):
        seed_fn(cfg.seed + info.rank)
    train_loader = make_train_loader(data, batch_size=cfg.batch_size, seed=cfg.seed, info=info, workers=cfg.workers)
    scheduler = create_scheduler(optimizer, cfg, updates_per_epoch=len(train_loader))
    train_model: torch.nn.Module = model
    if info.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    ctx = RetrainContext(cfg=cfg, arch=arch, data=data, info=info, model=model, train_model=train_model,
                         optimizer=optimizer, scheduler=scheduler, train_loader=train_loader,
                         precision=create_precision(cfg.amp, device), out_dir=out_dir, out=out,
                         ema=create_ema(model, cfg))
    return ctx, channels_last


def train_epoch(ctx: RetrainContext, *, loss_fn: nn.Module, mixup: Any = None, channels_last: bool = False,
                callbacks: Sequence[Callback] = ()) -> dict[str, float]:
    """Train ``ctx.train_model`` for one pass of ``ctx.train_loader`` through :class:`train.Engine`, then take
    the scheduler's epoch step. Returns ``loss``, ``acc``, ``images`` (summed over ranks), ``seconds`` (mean over
    ranks) and ``images_per_s``; raises :class:`train.NonFiniteLossError` at the end of a non-finite epoch."""
    info, cfg = ctx.info, ctx.cfg

    def step_end(loss: torch.Tensor) -> None:
        ctx.num_updates = engine.num_updates
        for cb in callbacks:
            cb.on_step_end(ctx, loss)

    engine = Engine(model=ctx.train_model, optimizer=ctx.optimizer, device=info.device, scheduler=ctx.scheduler,
                    loss_fn=loss_fn, precision=ctx.precision, channels_last=channels_last, mixup=mixup,
                    grad_clip=cfg.grad_clip, clip_mode=cfg.clip_mode, ema=ctx.ema, ema_source=ctx.model,
                    on_step_end=step_end, nan_check="epoch", reduce=lambda values: all_reduce_sums(values, info),
                    num_updates=ctx.num_updates)

    def stats(running: dict[str, float]) -> str:
        rate = running["images"] * info.world_size / max(running["seconds"], 1e-9)
        return f"loss {running['loss']:.4f}  lr {current_lr(ctx.optimizer):.4g}  {rate:,.0f} img/s"

    with StepProgress(total=len(ctx.train_loader), epoch=ctx.epoch + 1, epochs=cfg.epochs, interval=cfg.log_interval,
                      out=ctx.out, enabled=info.is_main) as progress:
        tr = engine.train_epoch(ctx.train_loader, progress=lambda step, running: progress.update(
            step, lambda: stats(running())))
    ctx.num_updates = engine.num_updates
    ctx.scheduler.step(ctx.epoch + 1)
    seconds = max(all_reduce_sums([tr["seconds"]], info)[0] / info.world_size, 1e-9)
    return {**tr, "seconds": seconds, "images_per_s": tr["images"] / seconds}


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The scheduled base lr (the first group's lr divided by its ``lr_scale``)."""
    g = optimizer.param_groups[0]
    return g["lr"] / g.get("lr_scale", 1.0)


def _set_epoch(loader: Any, epoch: int) -> None:
    target = getattr(loader, "sampler", loader)
    if hasattr(target, "set_epoch"):
        target.set_epoch(epoch)


def _evaluate(model: nn.Module, loader: Any, ctx: RetrainContext, channels_last: bool) -> dict[str, float]:
    """Test accuracy and loss over every rank's shard."""
    return evaluate_accuracy(model, loader, device=ctx.info.device, precision=ctx.precision,
                             channels_last=channels_last, reduce=lambda values: all_reduce_sums(values, ctx.info))


def _evaluate_row(ctx: RetrainContext, tr: dict[str, float], eval_loader: Any, channels_last: bool) -> dict[str, Any]:
    te = _evaluate(ctx.model, eval_loader, ctx, channels_last)
    row = {"epoch": ctx.epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_loss": te["loss"],
           "test_acc": te["acc"], "lr": current_lr(ctx.optimizer), "seconds": tr["seconds"],
           "images_per_s": tr["images_per_s"]}
    if ctx.ema is not None:
        ema = _evaluate(ctx.ema.module, eval_loader, ctx, channels_last)
        row.update(ema_test_loss=ema["loss"], ema_test_acc=ema["acc"])
    return row


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    ema = f"  ema_test_acc {row['ema_test_acc']:.4f}" if "ema_test_acc" in row else ""
    return (f"epoch {row['epoch']}/{epochs}  train_loss {row['train_loss']:.4f}  train_acc {row['train_acc']:.4f}  "
            f"test_acc {row['test_acc']:.4f}{ema}  lr {row['lr']:.4g}  {row['images_per_s']:,.0f} img/s  "
            f"{row['seconds']:.1f}s")


def _check_resumable(saved: dict[str, Any], arch: Arch, cfg: RetrainConfig, info: DistInfo) -> None:
    if saved["arch_id"] != arch.arch_id:
        raise ValueError(f"--resume: the checkpoint is for arch {saved['arch_id']}, not {arch.arch_id}")
    if saved["world_size"] != info.world_size:
        raise ValueError(f"--resume: the checkpoint was written by {saved['world_size']} process(es), this run has "
                         f"{info.world_size}; resume with the same number (the global batch depends on it)")
    changed = cfg.changed_training_fields(saved["config"])
    if changed:
        now = cfg.to_dict()
        diffs = ", ".join(f"{k} {saved['config'][k]!r} → {now[k]!r}" for k in changed)
        raise ValueError(f"--resume: settings differ from the checkpoint's ({diffs}); resume with the same "
                         f"settings or start a new --out folder")


def _restore(ctx: RetrainContext, saved: dict[str, Any], callbacks: list[Callback]) -> None:
    ctx.model.load_state_dict(saved["model"])
    ctx.optimizer.load_state_dict(saved["optimizer"])
    ctx.scheduler.load_state_dict(saved["scheduler"])
    if ctx.ema is not None:
        if saved["ema"] is None:
            raise ValueError("--resume: the checkpoint has no EMA weights")
        ctx.ema.load_state_dict(saved["ema"])
    if ctx.precision.scaler is not None and saved["scaler"] is not None:
        ctx.precision.scaler.load_state_dict(saved["scaler"])
    for cb, state in zip(callbacks, saved["callbacks"]):
        cb.load_state_dict(state)
    set_rng_state(saved["rng"][ctx.info.rank], ctx.info.device)
    ctx.epoch, ctx.num_updates, ctx.history, ctx.resumed = saved["epoch"], saved["num_updates"], saved["history"], True


def _save(ctx: RetrainContext, path: Path, callbacks: list[Callback]) -> None:
    rngs = gather_objects(rng_state(ctx.info.device), ctx.info)
    if not ctx.info.is_main:
        return
    scaler = ctx.precision.scaler
    save_checkpoint(path, {
        "arch_id": ctx.arch.arch_id, "arch": ctx.arch.to_yaml(), "epoch": ctx.epoch, "num_updates": ctx.num_updates,
        "model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
        "scheduler": ctx.scheduler.state_dict(), "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None, "rng": rngs, "history": ctx.history,
        "callbacks": [cb.state_dict() for cb in callbacks], "config": ctx.cfg.to_dict(),
        "world_size": ctx.info.world_size})


def _finish(ctx: RetrainContext, callbacks: Sequence[Callback] = (), eval_loader: Any = None,
            channels_last: bool = False) -> dict[str, Any]:
    from space.complexity import count_complexity

    cfg, arch, data, last = ctx.cfg, ctx.arch, ctx.data, ctx.history[-1]
    model, extra = ctx.model, {}
    final = next((f for f in (cb.final_model(ctx) for cb in callbacks) if f is not None), None)
    if final is not None:  # a compressed form of the trained network replaces it (LRPET's factorised export)
        dense_acc = last["test_acc"]
        arch, model = final
        model.to(ctx.info.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        te = _evaluate(model, eval_loader, ctx, channels_last)
        last = {**last, "test_acc": te["acc"], "test_loss": te["loss"]}
        extra = {"dense_arch_id": ctx.arch.arch_id, "pre_projection_test_acc": dense_acc}
        ctx.out(f"final model {arch.arch_id} ({arch.stages[0].block}): test_acc {te['acc']:.4f} "
                f"(before the last projection {dense_acc:.4f})")
    cost = count_complexity(build_model(arch, num_classes=data.num_classes, in_chans=data.in_chans),
                            input_size=arch.input_size, in_chans=data.in_chans)
    metrics = {"arch_id": arch.arch_id, **extra, "epochs": cfg.epochs, "test_acc": last["test_acc"],
               "test_loss": last["test_loss"], "params": cost["params"], "macs": cost["macs"], "flops": cost["flops"],
               "seconds": sum(r["seconds"] for r in ctx.history), "world_size": ctx.info.world_size,
               "global_batch": cfg.batch_size * ctx.info.world_size, "data": data.name, "in_chans": data.in_chans,
               "num_classes": data.num_classes, "mean": list(data.mean), "std": list(data.std),
               "config": cfg.to_dict(), "history": ctx.history}
    if "ema_test_acc" in last:
        metrics.update(ema_test_acc=last["ema_test_acc"], ema_test_loss=last["ema_test_loss"])
    if ctx.info.is_main:
        out_dir = ctx.out_dir
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, out_dir / "model.pt")
        if ctx.ema is not None:
            torch.save({k: v.cpu() for k, v in ctx.ema.module.state_dict().items()}, out_dir / "model_ema.pt")
        (out_dir / "arch.yaml").write_text(arch.to_yaml())
        if cfg.onnx:
            from space.onnx_export import export_arch

            export_arch(arch, num_classes=data.num_classes, in_chans=data.in_chans, weights=out_dir / "model.pt",
                        out=out_dir / "model.onnx")
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
