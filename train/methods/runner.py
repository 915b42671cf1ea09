"""The seed training methods as one set of plain settings and the hooks a training loop calls.

:class:`MethodsConfig` declares every option once (nested as ``proxy.methods`` in the search config and
as ``methods`` in ``RetrainConfig``; ``nas retrain`` flags are generated from it); :class:`MethodRunner`
is what the proxy training loop (:class:`evaluators.AccuracyEvaluator`) calls, in this order:

1. ``lr = runner.scaled_lr(base_lr, batch_size)`` — the batch-size rule (:mod:`.lr_rule`);
2. ``runner.start(model, loader, lr=lr, example_input=x)`` — GradInit (:mod:`.gradinit`), then the
   scale-invariant weights are found and the ELR tracker / fixed-ELR projection built (:mod:`.elr`);
3. ``make_sgd(model, ..., param_groups_fn=runner.param_groups_fn())`` — no weight decay on the SI
   weights in fixed-ELR mode;
4. ``runner.on_step_end(model, optimizer)`` after every optimizer step;
5. ``row.update(runner.on_epoch_end(epoch, model, optimizer))`` after every epoch.

Retraining uses the same pieces as ``train.retrain`` callbacks (``train.methods``).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
from pydantic import Field, model_validator

from ..config_base import ConfigModel, FieldError, literal
from ..engine import ParamGroupsFn, nas_param_groups
from .elr import ElrTracker, FixedElr, check_elr_optimizer, find_scale_invariant, si_param_groups_fn
from .gradinit import first_step, gradinit, gradinit_summary, inner_optimizer_for
from .lr_rule import LR_MAX_BATCH, LR_RULES, LR_WARMUP_EPOCHS, resolve_rule, scale_lr

ELR_MODES = ("off", "log", "fixed")
LrRule = literal(LR_RULES)
ElrMode = literal(ELR_MODES)


class MethodsConfig(ConfigModel):
    """Settings of the seed training methods; every default leaves training unchanged.

    - ``gradinit``: run GradInit before training (Zhu et al. 2021) for ``gradinit_iters`` iterations
      with scale learning rate ``gradinit_lr`` (τ), gradient-norm bound ``gradinit_gamma`` (γ) and
      lower bound ``gradinit_min_scale``; τ and γ default to the authors' settings for the optimizer's
      family; η·A is the optimizer's first step (:func:`~train.methods.gradinit.first_step`).
    - ``lr_rule``: ``none``, ``linear``, ``sqrt`` or ``auto`` (Granziol et al. 2022): the given lr is
      the one tuned at batch ``lr_base_batch`` and is moved to the actual (global) batch size, up to
      the critical batch ``lr_max_batch``; retraining warms up over ``lr_warmup_epochs`` (Goyal et al.).
    - ``elr``: ``off``, ``log`` (ELR of the scale-invariant weights each epoch, per optimizer family:
      lr/‖w‖² for SGD, lr/((1−μ)‖w‖²) with momentum μ, lr/‖w‖ for Adam) or ``fixed`` (train them on the
      sphere of radius ``elr_radius``, default their initial norm; Kodryan et al. 2022); SGD- and
      Adam-family optimizers only (:data:`~train.methods.elr.ELR_OPTIMIZERS`).
    """

    gradinit: bool = Field(False, description="GradInit before training (Zhu et al. 2021)")
    gradinit_iters: int = Field(100, ge=1, description="GradInit iterations")
    gradinit_lr: float | None = Field(None, gt=0, description="GradInit scale learning rate tau (default: 1e-2 for "
                                                              "SGD, 2.5e-3 for Adam, the authors' settings)")
    gradinit_gamma: float | None = Field(None, gt=0, description="GradInit gradient-norm bound gamma (default: 1 "
                                                                 "for SGD, 1000 for Adam (l1 norm), the authors')")
    gradinit_normalize_grad: bool | None = Field(None, description="GradInit: step along g/|g| for an SGD target "
                                                                   "(default: on for SGD, as the authors' CIFAR "
                                                                   "scripts; not for Adam-like targets)")
    gradinit_min_scale: float = Field(0.01, ge=0, lt=1, description="GradInit lower bound of the scales")
    lr_rule: LrRule = Field("none", description="move lr from lr_base_batch to the global batch: linear for SGD, "
                                                "sqrt for Adam-like, auto picks (Granziol et al. 2022)")
    lr_base_batch: int = Field(128, ge=1, description="batch size lr was tuned at")
    lr_max_batch: int = Field(LR_MAX_BATCH, ge=1, description="critical batch: above it the rule keeps its value "
                                                              "there (the stable lr saturates)")
    lr_warmup_epochs: int = Field(LR_WARMUP_EPOCHS, ge=0, description="gradual warm-up epochs when the rule raises "
                                                                      "the lr (Goyal et al. 2017): retrain from the "
                                                                      "unscaled lr unless warmup_epochs is set; proxy "
                                                                      "training linearly from 0, capped by its length")
    elr: ElrMode = Field("off", description="effective lr of scale-invariant weights: log it, or train them on a "
                                            "sphere (fixed; Kodryan et al. 2022)")
    elr_radius: float | None = Field(None, gt=0, description="sphere radius with elr fixed (default: the weights' "
                                                             "initial norm)")

    @model_validator(mode="after")
    def _radius_only_when_fixed(self) -> MethodsConfig:
        if self.elr_radius is not None and self.elr != "fixed":
            raise FieldError("elr_radius", f"only used with elr: fixed, got elr {self.elr!r}")
        return self

    def check_optimizer(self, optimizer_name: str) -> None:
        """The optimizer-dependent checks (:class:`FieldError`): ``lr_rule: auto``, GradInit and the ELR need a
        known optimizer family."""
        try:
            resolve_rule(self.lr_rule, optimizer_name)
            if self.gradinit:
                inner = inner_optimizer_for(optimizer_name)
                if self.gradinit_normalize_grad and inner != "sgd":
                    raise ValueError(f"gradinit_normalize_grad: applies to an SGD-family optimizer only; "
                                     f"{optimizer_name!r} steps by sign(g)")
            if self.elr != "off":
                check_elr_optimizer(optimizer_name)
        except ValueError as exc:
            field = str(exc).split(":", 1)[0]
            raise FieldError(field, str(exc).removeprefix(f"{field}: ")) from None


class MethodRunner:
    """The per-run state of the methods chosen by a :class:`MethodsConfig` (see the module doc for the order)."""

    def __init__(self, cfg: MethodsConfig, *, optimizer_name: str = "sgd", momentum: float = 0.9,
                 elr_per_layer: bool = True) -> None:
        self.cfg = cfg.check()
        cfg.check_optimizer(optimizer_name)
        self.optimizer_name, self.momentum, self.elr_per_layer = optimizer_name, momentum, elr_per_layer
        self.si_params: list[str] = []
        self.tracker: ElrTracker | None = None
        self.fixed: FixedElr | None = None
        self.stats: dict[str, float] = {}

    def scaled_lr(self, base_lr: float, batch_size: int) -> float:
        """``base_lr`` moved from ``lr_base_batch`` to ``batch_size`` by ``lr_rule``."""
        return scale_lr(base_lr, batch_size, self.cfg.lr_base_batch, self.optimizer_name, self.cfg.lr_rule,
                        max_batch=self.cfg.lr_max_batch)

    def start(self, model: nn.Module, loader: Iterable, *, lr: float, example_input: torch.Tensor,
              device: str | torch.device | None = None) -> dict[str, float]:
        """GradInit (if on) with η·A = the optimizer's first step at ``lr``, then SI detection and the ELR
        tracker/projection (if ``elr``).

        ``example_input``: any batch of ≥ 2 inputs of the model's shape (all zeros is fine and draws
        nothing from the RNG). Returns GradInit's scalar statistics (``gradinit_*``; empty if off).
        """
        cfg = self.cfg
        if cfg.gradinit:
            inner, factor = first_step(self.optimizer_name, self.momentum)
            stats = gradinit(model, loader, lr=lr * factor, gamma=cfg.gradinit_gamma,
                             normalize_grad=cfg.gradinit_normalize_grad,
                             alpha_floor=cfg.gradinit_min_scale, iters=cfg.gradinit_iters, inner_optimizer=inner,
                             scale_lr=cfg.gradinit_lr, device=device)
            self.stats = gradinit_summary(stats)
        if cfg.elr != "off":
            self.si_params = find_scale_invariant(model, example_input)
            self.tracker = ElrTracker(model, self.si_params, per_layer=self.elr_per_layer)
            if cfg.elr == "fixed":
                self.fixed = FixedElr(model, self.si_params, radius=cfg.elr_radius)
        return dict(self.stats)

    def param_groups_fn(self, base: ParamGroupsFn | None = nas_param_groups) -> ParamGroupsFn | None:
        """``base``, with the SI weights moved to groups without weight decay in fixed-ELR mode."""
        return si_param_groups_fn(self.si_params, base=base) if self.fixed is not None else base

    def on_step_end(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.fixed is not None:
            self.fixed.after_step()

    def on_epoch_end(self, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        return self.tracker.on_epoch_end(epoch, model, optimizer) if self.tracker is not None else {}
