"""The seed training methods as one set of plain settings and the hooks a training loop calls.

:class:`MethodsConfig` names every option once (the same field names belong in the search config's
``proxy`` section and in ``RetrainConfig``); :class:`MethodRunner` is what the proxy training loop
(:class:`evaluators.AccuracyEvaluator`) calls, in this order:

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

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable

import torch
import torch.nn as nn

from ..engine import ParamGroupsFn, nas_param_groups
from .elr import ElrTracker, FixedElr, find_scale_invariant, si_param_groups_fn
from .gradinit import gradinit, gradinit_summary, inner_optimizer_for
from .lr_rule import LR_RULES, resolve_rule, scale_lr

ELR_MODES = ("off", "log", "fixed")


@dataclass(frozen=True)
class MethodsConfig:
    """Settings of the seed training methods; every default leaves training unchanged.

    - ``gradinit``: run GradInit before training (Zhu et al. 2021) for ``gradinit_iters`` iterations
      with scale learning rate ``gradinit_lr`` (τ), gradient-norm bound ``gradinit_gamma`` (γ) and
      lower bound ``gradinit_min_scale``; η is the training lr, A follows the optimizer.
    - ``lr_rule``: ``none``, ``linear``, ``sqrt`` or ``auto`` (Granziol et al. 2022): the given lr is
      the one tuned at batch ``lr_base_batch`` and is moved to the actual (global) batch size.
    - ``elr``: ``off``, ``log`` (ELR of the scale-invariant weights each epoch) or ``fixed`` (train
      them on the sphere of radius ``elr_radius``, default their initial norm; Kodryan et al. 2022).
    """

    gradinit: bool = False
    gradinit_iters: int = 100
    gradinit_lr: float = 1e-2
    gradinit_gamma: float = 1.0
    gradinit_min_scale: float = 0.01
    lr_rule: str = "none"
    lr_base_batch: int = 128
    elr: str = "off"
    elr_radius: float | None = None

    def check(self) -> "MethodsConfig":
        """``self`` if valid; ``ValueError("field: problem")`` otherwise."""
        if not isinstance(self.gradinit, bool):
            raise ValueError(f"gradinit: must be true or false, got {self.gradinit!r}")
        for name in ("gradinit_iters", "lr_base_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in ("gradinit_lr", "gradinit_gamma"):
            value = getattr(self, name)
            if not _number(value) or not value > 0:
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
        if not _number(self.gradinit_min_scale) or not 0 <= self.gradinit_min_scale < 1:
            raise ValueError(f"gradinit_min_scale: must be in [0, 1), got {self.gradinit_min_scale!r}")
        if self.lr_rule not in LR_RULES:
            raise ValueError(f"lr_rule: must be one of {', '.join(LR_RULES)}, got {self.lr_rule!r}")
        if self.elr not in ELR_MODES:
            raise ValueError(f"elr: must be one of {', '.join(ELR_MODES)}, got {self.elr!r}")
        if self.elr_radius is not None and (not _number(self.elr_radius) or not self.elr_radius > 0):
            raise ValueError(f"elr_radius: must be a finite number > 0 or null, got {self.elr_radius!r}")
        if self.elr_radius is not None and self.elr != "fixed":
            raise ValueError(f"elr_radius: only used with elr: fixed, got elr {self.elr!r}")
        return self

    def check_optimizer(self, optimizer_name: str) -> None:
        """The optimizer-dependent checks: ``lr_rule: auto`` and GradInit need a known optimizer family."""
        resolve_rule(self.lr_rule, optimizer_name)
        if self.gradinit:
            inner_optimizer_for(optimizer_name)

    @classmethod
    def from_settings(cls, settings: Any) -> "MethodsConfig":
        """The fields of this class read from any object (dataclass, pydantic model) or mapping that has them."""
        get = settings.get if isinstance(settings, dict) else (lambda k, d: getattr(settings, k, d))
        return cls(**{f.name: get(f.name, f.default) for f in fields(cls)}).check()


METHOD_FIELDS = tuple(f.name for f in fields(MethodsConfig))
"""The option names, in order (for configs that carry them flat)."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class MethodRunner:
    """The per-run state of the methods chosen by a :class:`MethodsConfig` (see the module doc for the order)."""

    def __init__(self, cfg: MethodsConfig, *, optimizer_name: str = "sgd", elr_per_layer: bool = True) -> None:
        self.cfg = cfg.check()
        cfg.check_optimizer(optimizer_name)
        self.optimizer_name, self.elr_per_layer = optimizer_name, elr_per_layer
        self.si_params: list[str] = []
        self.tracker: ElrTracker | None = None
        self.fixed: FixedElr | None = None
        self.stats: dict[str, float] = {}

    def scaled_lr(self, base_lr: float, batch_size: int) -> float:
        """``base_lr`` moved from ``lr_base_batch`` to ``batch_size`` by ``lr_rule``."""
        return scale_lr(base_lr, batch_size, self.cfg.lr_base_batch, self.optimizer_name, self.cfg.lr_rule)

    def start(self, model: nn.Module, loader: Iterable, *, lr: float, example_input: torch.Tensor,
              device: str | torch.device | None = None) -> dict[str, float]:
        """GradInit (if on) with η = ``lr``, then SI detection and the ELR tracker/projection (if ``elr``).

        ``example_input``: any batch of ≥ 2 inputs of the model's shape (all zeros is fine and draws
        nothing from the RNG). Returns GradInit's scalar statistics (``gradinit_*``; empty if off).
        """
        cfg = self.cfg
        if cfg.gradinit:
            stats = gradinit(model, loader, lr=lr, gamma=cfg.gradinit_gamma, alpha_floor=cfg.gradinit_min_scale,
                             iters=cfg.gradinit_iters, inner_optimizer=inner_optimizer_for(self.optimizer_name),
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
