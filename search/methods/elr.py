"""Retrain hook for the effective learning rate of scale-invariant weights (Kodryan et al., NeurIPS 2022;
:mod:`evaluators.methods.elr`).

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

from evaluators.methods.elr import ElrTracker, FixedElr, find_scale_invariant, si_param_groups_fn
from evaluators.methods.runner import ELR_MODES

from ..retrain.callbacks import Callback, RetrainContext


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
