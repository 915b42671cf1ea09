"""The training methods as retrain :class:`~train.retrain.callbacks.Callback` s (the algorithms are
pure torch in :mod:`train.methods`; proxy training calls them through ``MethodRunner``).

- Retrain hook for the batch-size learning-rate rule (Granziol et al., JMLR 2022; :mod:`train.methods.lr_rule`).

  :class:`LrRuleCallback` rewrites ``cfg.lr`` in ``configure``, before anything is built: the configured
  lr is the one tuned at ``base_batch``; the run's global batch is ``cfg.batch_size × world_size``,
  capped at the critical batch ``max_batch``. Only the peak lr moves (``min_lr`` is absolute, as in
  timm); when it rises and no warm-up is set, a gradual warm-up from the unscaled lr is added (Goyal
  et al. 2017). A resumed run applies the same rule to the same settings, so its lr matches the
  checkpoint's.

- Retrain hook for GradInit (Zhu et al., NeurIPS 2021; :mod:`train.methods.gradinit`).

  :class:`GradInitCallback` runs GradInit in ``on_start`` of a fresh run (a resumed run already holds
  the rescaled weights in its checkpoint), on the bare model with batches of the training loader, with
  η·A = the first step of ``cfg.opt`` at the run's lr (after any batch-size rule; Nesterov SGD moves by
  lr·(1+μ)·g, Adam by lr·sign g: :func:`~train.methods.gradinit.first_step`). Under data parallelism it
  runs once: rank 0 runs it on a copy of the bare model with plain BatchNorm in place of SyncBatchNorm
  (no collectives inside GradInit), on its loader shard; then its scaled parameters and statistics are
  broadcast and the other ranks do not run it. The EMA copy, if any, is reset to the new weights. The
  scalar statistics join the first epoch's metrics row and the checkpoint.

- Retrain hook for the effective learning rate of scale-invariant weights (Kodryan et al., NeurIPS 2022;
  :mod:`train.methods.elr`).

  :class:`ElrCallback` finds the scale-invariant (SI) conv weights in ``on_start`` (after GradInit,
  when both are on: list order), adds ``elr``, ``si_norm`` and per-layer ``elr/<param>`` to every
  epoch's metrics row, and in ``fixed`` mode projects the SI weights back onto their sphere after
  every optimizer step. The radius is kept in the checkpoint, so a resumed run keeps the same sphere.

  Fixed mode needs the SI weights in optimizer groups without weight decay, as in the paper. The
  groups are built before callbacks start, so they come from :meth:`ElrCallback.param_claims` —
  claimed groups in ``nas_param_groups()`` form that the optimizer builder must merge — and
  ``on_start`` refuses to train on the sphere with weight decay on the SI weights.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ..methods.elr import ElrTracker, FixedElr, find_scale_invariant, si_param_groups_fn
from ..methods.gradinit import check_options, first_step, gradinit, gradinit_once, gradinit_summary, inner_optimizer_for
from ..methods.lr_rule import LR_MAX_BATCH, LR_RULES, LR_WARMUP_EPOCHS, optimizer_family, resolve_rule, scale_lr
from ..methods.runner import ELR_MODES, MethodsConfig
from .callbacks import Callback, RetrainContext
from .config import RetrainConfig


class LrRuleCallback(Callback):
    """``lr ← scale_lr(lr, batch_size × world_size, base_batch, opt, rule, max_batch=max_batch)`` (linear for SGD,
    √ for Adam-like, constant past the critical batch). When that raises the lr and the run has no warm-up,
    Goyal et al.'s gradual warm-up is added: ``warmup_epochs`` = min(``warmup_epochs``, epochs − 1) from
    ``warmup_lr`` = the unscaled lr."""

    def __init__(self, *, rule: str = "auto", base_batch: int = 128, max_batch: int | None = LR_MAX_BATCH,
                 warmup_epochs: int = LR_WARMUP_EPOCHS) -> None:
        if rule not in LR_RULES:
            raise ValueError(f"lr_rule: must be one of {', '.join(LR_RULES)}, got {rule!r}")
        cap = 1 if max_batch is None else max_batch
        for field, value, least in (("lr_base_batch", base_batch, 1), ("lr_max_batch", cap, 1),
                                    ("lr_warmup_epochs", warmup_epochs, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{field}: must be an integer >= {least}, got {value!r}")
        self.rule, self.base_batch, self.max_batch, self.warmup_epochs = rule, base_batch, max_batch, warmup_epochs

    def configure(self, cfg: RetrainConfig, *, world_size: int) -> RetrainConfig:
        lr = scale_lr(cfg.lr, cfg.batch_size * world_size, self.base_batch, cfg.opt, self.rule,
                      max_batch=self.max_batch)
        warmup = min(self.warmup_epochs, cfg.epochs - 1)
        if lr > cfg.lr and cfg.warmup_epochs == 0 and warmup > 0:
            return cfg.replace(lr=lr, warmup_epochs=warmup, warmup_lr=cfg.lr)
        return cfg.replace(lr=lr)


__all__ = ["LR_RULES", "LrRuleCallback", "optimizer_family", "resolve_rule", "scale_lr"]


class GradInitCallback(Callback):
    """GradInit before the first epoch: ``iters`` T, ``scale_lr`` τ, ``gamma`` γ, ``alpha_floor`` α_lb.

    ``lr`` (η) and ``inner_optimizer`` (``sgd``/``adam``) default to the first step of the run's optimizer;
    ``scale_lr`` and ``gamma`` to the authors' settings for its family.
    """

    def __init__(self, *, iters: int = 100, scale_lr: float | None = None, gamma: float | None = None,
                 alpha_floor: float = 0.01, lr: float | None = None, inner_optimizer: str | None = None,
                 normalize_grad: bool | None = None) -> None:
        check_options(lr if lr is not None else 1.0, gamma or 1.0, alpha_floor, iters, inner_optimizer or "sgd",
                      scale_lr or 1.0)
        self.iters, self.scale_lr, self.gamma, self.alpha_floor = iters, scale_lr, gamma, alpha_floor
        self.lr, self.inner_optimizer, self.normalize_grad = lr, inner_optimizer, normalize_grad
        self.stats: dict[str, float] = {}
        self._report = False

    def on_start(self, ctx: RetrainContext) -> None:
        if ctx.resumed:
            return
        if self.lr is not None and self.inner_optimizer is not None:
            inner, eta = self.inner_optimizer, self.lr
        else:
            inner, factor = first_step(ctx.cfg.opt, ctx.cfg.momentum)
            inner, eta = self.inner_optimizer or inner, self.lr if self.lr is not None else ctx.cfg.lr * factor
        stats = gradinit_once(ctx.model, ctx.train_loader, distributed=ctx.info.distributed, is_main=ctx.info.is_main,
                              lr=eta, gamma=self.gamma,
                              alpha_floor=self.alpha_floor, iters=self.iters, inner_optimizer=inner,
                              scale_lr=self.scale_lr, normalize_grad=self.normalize_grad, device=ctx.info.device)
        if ctx.ema is not None:
            ctx.ema.set(ctx.model)
        self.stats, self._report = gradinit_summary(stats), True
        ctx.out(f"gradinit: {self.iters} iterations ({stats['constraint_steps']} on the gradient-norm constraint), "
                f"alpha in [{stats['alpha_min']:.3g}, {stats['alpha_max']:.3g}], one-step loss "
                f"{stats['step_loss']:.4f}, {stats['seconds']:.1f}s")

    def on_epoch_end(self, ctx: RetrainContext, row: dict[str, Any]) -> None:
        if self._report:
            row.update(self.stats)
            self._report = False

    def state_dict(self) -> dict[str, Any]:
        return {"stats": dict(self.stats)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats = dict(state.get("stats", {}))


__all__ = ["GradInitCallback", "gradinit", "gradinit_summary", "inner_optimizer_for"]


def example_input(ctx: RetrainContext) -> torch.Tensor:
    """Two all-zero inputs of the run's shape: detection is structural (the values do not matter) and
    zeros draw nothing from the RNG, so a resumed run stays identical to an uninterrupted one."""
    size = ctx.arch.input_size
    return torch.zeros(2, ctx.data.in_chans, size, size, device=ctx.info.device)


class ElrCallback(Callback):
    """``mode`` ``log``: ELR per epoch; ``fixed``: also train the SI weights on a sphere of ``radius``."""

    def __init__(self, *, mode: str = "log", radius: float | None = None, per_layer: bool = True) -> None:
        if mode not in ELR_MODES or mode == "off":
            raise ValueError(f"elr: the callback needs 'log' or 'fixed', got {mode!r}")
        if radius is not None and mode != "fixed":
            raise ValueError(f"elr_radius: only used with elr: fixed, got elr {mode!r}")
        self.mode, self.radius, self.per_layer = mode, radius, per_layer
        self.si_params: list[str] = []
        self.tracker: ElrTracker | None = None
        self.fixed: FixedElr | None = None

    def param_claims(self, model: nn.Module, example: torch.Tensor) -> list[dict[str, Any]]:
        """Optimizer groups to claim before the optimizer is built: the SI weights without weight decay
        (fixed mode), in the ``nas_param_groups()`` form. No ``lr_scale``: a module's own claim on an SI
        weight keeps its ``lr_scale`` (as :func:`si_param_groups_fn` does for proxy training)."""
        if self.mode != "fixed":
            return []
        names = set(find_scale_invariant(model, example))
        params = [p for n, p in model.named_parameters() if n in names]
        return [{"params": params, "weight_decay": 0.0}] if params else []

    def on_start(self, ctx: RetrainContext) -> None:
        self.si_params = find_scale_invariant(ctx.model, example_input(ctx))
        self.tracker = ElrTracker(ctx.model, self.si_params, per_layer=self.per_layer)
        if self.mode == "fixed":
            self.fixed = FixedElr(ctx.model, self.si_params, radius=self.radius)
            si = {id(p) for p in self.fixed.params.values()}
            decayed = [g for g in ctx.optimizer.param_groups if g.get("weight_decay", 0) > 0
                       and any(id(p) in si for p in g["params"])]
            if decayed:
                raise ValueError("elr: fixed mode trains the scale-invariant weights without weight decay, but the "
                                 "optimizer decays them; build the optimizer groups with ElrCallback.param_claims()")
        ctx.out(f"elr: {len(self.si_params)} scale-invariant weight tensors"
                + (f", sphere radius {self.fixed.radius:.4g}" if self.fixed is not None else ""))

    def on_step_end(self, ctx: RetrainContext, loss: torch.Tensor) -> None:
        if self.fixed is not None:
            self.fixed.after_step()

    def on_epoch_end(self, ctx: RetrainContext, row: dict[str, Any]) -> None:
        if self.tracker is not None:
            row.update(self.tracker.on_epoch_end(ctx.epoch, ctx.model, ctx.optimizer))

    def state_dict(self) -> dict[str, Any]:
        return {"radius": self.fixed.radius} if self.fixed is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.mode == "fixed" and state.get("radius") is not None:
            self.radius = float(state["radius"])


__all__ = ["ElrCallback", "ElrTracker", "FixedElr", "example_input", "find_scale_invariant", "si_param_groups_fn"]


def method_callbacks(cfg: MethodsConfig) -> list[Callback]:
    """Callbacks for ``cfg``: the lr rule (changes the config), then GradInit, then ELR (sees the final init)."""
    cfg = cfg.check()
    callbacks: list[Callback] = []
    if cfg.lr_rule != "none":
        callbacks.append(LrRuleCallback(rule=cfg.lr_rule, base_batch=cfg.lr_base_batch, max_batch=cfg.lr_max_batch,
                                        warmup_epochs=cfg.lr_warmup_epochs))
    if cfg.gradinit:
        callbacks.append(GradInitCallback(iters=cfg.gradinit_iters, scale_lr=cfg.gradinit_lr, gamma=cfg.gradinit_gamma,
                                          alpha_floor=cfg.gradinit_min_scale,
                                          normalize_grad=cfg.gradinit_normalize_grad))
    if cfg.elr != "off":
        callbacks.append(ElrCallback(mode=cfg.elr, radius=cfg.elr_radius))
    return callbacks
