"""Retrain hook for GradInit (Zhu et al., NeurIPS 2021; :mod:`evaluators.methods.gradinit`).

:class:`GradInitCallback` runs GradInit in ``on_start`` of a fresh run (a resumed run already holds
the rescaled weights in its checkpoint), on the bare model with batches of the training loader, with
η = the run's lr (after any batch-size rule) and A from ``cfg.opt`` (SGD family → SGD step,
Adam-like → sign step). Under data parallelism every rank runs it on its own shard and then takes
rank 0's weights (a broadcast), so all replicas start equal; the EMA copy, if any, is reset to the
new weights. The scalar statistics join the first epoch's metrics row and the checkpoint.
"""
from __future__ import annotations

from typing import Any

import torch.distributed as dist

from evaluators.methods.gradinit import check_options, gradinit, gradinit_summary, inner_optimizer_for

from ..retrain.callbacks import Callback, RetrainContext


class GradInitCallback(Callback):
    """GradInit before the first epoch: ``iters`` T, ``scale_lr`` τ, ``gamma`` γ, ``alpha_floor`` α_lb.

    ``lr`` (η) and ``inner_optimizer`` (``sgd``/``adam``) default to the run's lr and optimizer family.
    """

    def __init__(self, *, iters: int = 100, scale_lr: float = 1e-2, gamma: float = 1.0, alpha_floor: float = 0.01,
                 lr: float | None = None, inner_optimizer: str | None = None) -> None:
        check_options(lr if lr is not None else 1.0, gamma, alpha_floor, iters, inner_optimizer or "sgd", scale_lr)
        self.iters, self.scale_lr, self.gamma, self.alpha_floor = iters, scale_lr, gamma, alpha_floor
        self.lr, self.inner_optimizer = lr, inner_optimizer
        self.stats: dict[str, float] = {}
        self._report = False

    def on_start(self, ctx: RetrainContext) -> None:
        if ctx.resumed:
            return
        inner = self.inner_optimizer or inner_optimizer_for(ctx.cfg.opt)
        stats = gradinit(ctx.model, ctx.train_loader, lr=self.lr if self.lr is not None else ctx.cfg.lr,
                         gamma=self.gamma, alpha_floor=self.alpha_floor, iters=self.iters, inner_optimizer=inner,
                         scale_lr=self.scale_lr, device=ctx.info.device)
        if ctx.info.distributed:
            for p in ctx.model.parameters():
                dist.broadcast(p.data, src=0)
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
