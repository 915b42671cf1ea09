"""Seed training methods (issue 4) for retraining, as :class:`search.retrain.Callback` s.

The algorithms are pure torch in :mod:`evaluators.methods` (proxy training in ``evaluators`` uses
them too, and ``evaluators`` may not import ``search``); this package re-exports them and adds the
retrain hooks:

- :class:`LrRuleCallback` — batch-size lr rule (Granziol et al. 2022) in ``configure``;
- :class:`GradInitCallback` — GradInit (Zhu et al. 2021) in ``on_start``;
- :class:`ElrCallback` — ELR logging / fixed-ELR sphere (Kodryan et al. 2022) per step and epoch;
- :func:`method_callbacks` — the callbacks a :class:`MethodsConfig` asks for, in the order they must run.
"""
from __future__ import annotations

from ..retrain.callbacks import Callback
from .elr import ElrCallback
from .gradinit import GradInitCallback
from .lr_rule import LrRuleCallback

# After the submodules: their import binds e.g. ``search.methods.gradinit`` to the module; the
# public name is the function.
from evaluators.methods import (ELR_MODES, LR_RULES, METHOD_FIELDS, ElrTracker, FixedElr,  # noqa: E402
                                MethodRunner, MethodsConfig, find_scale_invariant, gradinit, gradinit_summary,
                                inner_optimizer_for, optimizer_family, resolve_rule, scale_lr, si_param_groups_fn)


def method_callbacks(cfg: MethodsConfig) -> list[Callback]:
    """Callbacks for ``cfg``: the lr rule (changes the config), then GradInit, then ELR (sees the final init)."""
    cfg = cfg.check()
    callbacks: list[Callback] = []
    if cfg.lr_rule != "none":
        callbacks.append(LrRuleCallback(rule=cfg.lr_rule, base_batch=cfg.lr_base_batch))
    if cfg.gradinit:
        callbacks.append(GradInitCallback(iters=cfg.gradinit_iters, scale_lr=cfg.gradinit_lr, gamma=cfg.gradinit_gamma,
                                          alpha_floor=cfg.gradinit_min_scale))
    if cfg.elr != "off":
        callbacks.append(ElrCallback(mode=cfg.elr, radius=cfg.elr_radius))
    return callbacks


__all__ = [
    "ELR_MODES", "ElrCallback", "ElrTracker", "FixedElr", "GradInitCallback", "LR_RULES", "LrRuleCallback",
    "METHOD_FIELDS", "MethodRunner", "MethodsConfig", "find_scale_invariant", "gradinit", "gradinit_summary",
    "inner_optimizer_for", "method_callbacks", "optimizer_family", "resolve_rule", "scale_lr", "si_param_groups_fn",
]
