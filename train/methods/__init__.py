"""Training-side methods, pure torch so that proxy training (evaluators) and retraining
(``train.methods`` callbacks) share one implementation.

- :func:`gradinit` — learned per-tensor init scales (Zhu et al., NeurIPS 2021);
- :func:`scale_lr` — learning rate as a function of batch size: linear for SGD, square root for
  Adam-like optimizers (Granziol et al., JMLR 2022);
- :func:`find_scale_invariant`, :class:`ElrTracker`, :class:`FixedElr` — effective learning rate of
  scale-invariant weights and training on a sphere (Kodryan et al., NeurIPS 2022);
- :class:`MethodsConfig` / :class:`MethodRunner` — the options and the hooks a training loop calls.

BN-init-revisited's γ rule (Davis & Frank 2022) lives with its norm (``space/norms/bn_revisited.py``)
and reaches every optimizer through ``nas_param_groups()``.
"""
from .elr import ElrTracker, FixedElr, find_scale_invariant, si_param_groups_fn
from .gradinit import INNER_OPTIMIZERS, gradinit, gradinit_summary, inner_optimizer_for
from .lr_rule import LR_RULES, optimizer_family, resolve_rule, scale_lr
from .runner import ELR_MODES, MethodRunner, MethodsConfig

__all__ = [
    "ELR_MODES", "ElrTracker", "FixedElr", "INNER_OPTIMIZERS", "LR_RULES", "MethodRunner",
    "MethodsConfig", "find_scale_invariant", "gradinit", "gradinit_summary", "inner_optimizer_for", "optimizer_family",
    "resolve_rule", "scale_lr", "si_param_groups_fn",
]
