"""Retrain hook for the batch-size learning-rate rule (Granziol et al., JMLR 2022; :mod:`evaluators.methods.lr_rule`).

:class:`LrRuleCallback` rewrites ``cfg.lr`` in ``configure``, before anything is built: the configured
lr is the one tuned at ``base_batch``; the run's global batch is ``cfg.batch_size × world_size``.
Only the peak lr moves (``warmup_lr`` and ``min_lr`` are absolute values, as in timm). A resumed run
applies the same rule to the same settings, so its lr matches the checkpoint's.
"""
from __future__ import annotations

from evaluators.methods.lr_rule import LR_RULES, optimizer_family, resolve_rule, scale_lr

from ..retrain.callbacks import Callback
from ..retrain.config import RetrainConfig


class LrRuleCallback(Callback):
    """``lr ← scale_lr(lr, batch_size × world_size, base_batch, opt, rule)`` (linear for SGD, √ for Adam-like)."""

    def __init__(self, *, rule: str = "auto", base_batch: int = 128) -> None:
        if rule not in LR_RULES:
            raise ValueError(f"lr_rule: must be one of {', '.join(LR_RULES)}, got {rule!r}")
        if isinstance(base_batch, bool) or not isinstance(base_batch, int) or base_batch < 1:
            raise ValueError(f"lr_base_batch: must be an integer >= 1, got {base_batch!r}")
        self.rule, self.base_batch = rule, base_batch

    def configure(self, cfg: RetrainConfig, *, world_size: int) -> RetrainConfig:
        lr = scale_lr(cfg.lr, cfg.batch_size * world_size, self.base_batch, cfg.opt, self.rule)
        return cfg.replace(lr=lr)


__all__ = ["LR_RULES", "LrRuleCallback", "optimizer_family", "resolve_rule", "scale_lr"]
