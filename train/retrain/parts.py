"""The parts of a training run, taken from timm: optimizer, LR schedule, loss and mixup, EMA, precision.

- Parameter groups: timm's ``param_groups_weight_decay`` (no weight decay on 1-D parameters and
  biases — norm scales/shifts — and on the model's ``no_weight_decay()`` names; Goyal et al. 2017),
  then every parameter a module claims through ``nas_param_groups()`` moves to its own group with
  its ``lr_scale`` and ``weight_decay`` (e.g. BN-init-revisited's γ: lr/100, no decay; Davis & Frank
  2022), and so does every parameter a training method claims (``Callback.param_claims``; e.g. the
  fixed-ELR sphere's weights: no decay). timm's schedulers multiply each group's scheduled lr by its
  ``lr_scale``.
- ``timm.optim.create_optimizer_v2`` over those groups; ``timm.scheduler.create_scheduler_v2``.
- Loss: cross-entropy; timm's ``LabelSmoothingCrossEntropy`` (Szegedy et al. 2016) with
  ``label_smoothing``; with mixup (Zhang et al. 2018) / cutmix (Yun et al. 2019) timm's ``Mixup``
  makes soft targets (smoothing folded in) scored by ``SoftTargetCrossEntropy`` — timm train.py's rule.
- ``timm.utils.ModelEmaV3`` for the weight EMA; ``torch.autocast`` + ``GradScaler`` (fp16 only) from
  :func:`train.engine.create_precision`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3

from train import nas_param_groups
from train.engine import Precision, create_precision  # noqa: F401  (re-exported: the precision part)

from .config import RetrainConfig


def param_groups(model: nn.Module, *, weight_decay: float,
                 extra_claims: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Optimizer groups: timm's weight-decay split of the unclaimed parameters plus the claimed groups.

    The claimed groups are the modules' ``nas_param_groups()`` merged with ``extra_claims`` (from the
    callbacks' ``param_claims``): for a parameter in both, the extra claim's ``lr_scale``/``weight_decay``
    override the module's and the keys it leaves out keep the module's. Every group has ``lr_scale``
    (1 unless claimed) and ``weight_decay``; no group sets ``lr``, so the optimizer's lr is the base lr
    and timm's scheduler applies ``lr_scale``.
    """
    claimed = merge_claims(nas_param_groups(model), extra_claims)
    taken = {id(p) for g in claimed for p in g["params"]}
    no_wd = getattr(model, "no_weight_decay", None)
    groups: list[dict[str, Any]] = []
    for g in param_groups_weight_decay(model, weight_decay, no_weight_decay_list=set(no_wd()) if no_wd else ()):
        params = [p for p in g["params"] if id(p) not in taken]
        if params:
            groups.append({**g, "params": params, "lr_scale": 1.0})
    for g in claimed:
        params = [p for p in g["params"] if p.requires_grad]
        if params:
            groups.append({"params": params, "lr_scale": float(g.get("lr_scale", 1.0)),
                           "weight_decay": float(g.get("weight_decay", weight_decay))})
    return groups


def merge_claims(base: Sequence[dict[str, Any]], extra: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``base`` claimed groups with ``extra``'s settings laid over the parameters they share, then the rest of
    ``extra``. A parameter in two extra claims is an error (two methods would disagree about it)."""
    owner: dict[int, int] = {}
    for i, g in enumerate(extra):
        unknown = set(g) - {"params", "lr_scale", "weight_decay"}
        if "params" not in g or unknown:
            raise ValueError(f"param_claims: each group needs 'params' and may set 'lr_scale', 'weight_decay'; "
                             f"got keys {sorted(g)}")
        for p in g["params"]:
            if owner.setdefault(id(p), i) != i:
                raise ValueError("param_claims: a parameter is claimed by two training methods")
    merged: list[dict[str, Any]] = []
    for g in base:
        split: dict[int | None, list[nn.Parameter]] = {}
        for p in g["params"]:
            split.setdefault(owner.get(id(p)), []).append(p)
        for i, params in split.items():
            over = {k: v for k, v in extra[i].items() if k != "params"} if i is not None else {}
            merged.append({**g, **over, "params": params})
    in_base = {id(p) for g in base for p in g["params"]}
    for g in extra:
        params = [p for p in g["params"] if id(p) not in in_base]
        if params:
            merged.append({**g, "params": params})
    return merged


def create_optimizer(groups: list[dict[str, Any]], cfg: RetrainConfig) -> torch.optim.Optimizer:
    """timm's optimizer ``cfg.opt`` over ``groups`` (from :func:`param_groups`)."""
    return create_optimizer_v2(groups, opt=cfg.opt.lower(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                               momentum=cfg.momentum)


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: RetrainConfig, *, updates_per_epoch: int) -> Any:
    """timm's scheduler ``cfg.sched`` over ``cfg.epochs`` (per iteration when ``sched_on_updates``)."""
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=cfg.sched, num_epochs=cfg.epochs, decay_epochs=cfg.decay_epochs,
        decay_milestones=list(cfg.decay_milestones), decay_rate=cfg.decay_rate, min_lr=cfg.min_lr,
        warmup_lr=cfg.warmup_lr, warmup_epochs=cfg.warmup_epochs, step_on_epochs=not cfg.sched_on_updates,
        updates_per_epoch=updates_per_epoch)
    return scheduler


def create_loss(cfg: RetrainConfig, *, num_classes: int) -> tuple[nn.Module, Mixup | None]:
    """(training loss, mixup/cutmix or ``None``) following timm train.py's choice."""
    if cfg.uses_mixup:
        mixup = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                      switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                      num_classes=num_classes)
        return SoftTargetCrossEntropy(), mixup
    if cfg.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing), None
    return nn.CrossEntropyLoss(), None


def create_ema(model: nn.Module, cfg: RetrainConfig) -> ModelEmaV3 | None:
    """timm's ``ModelEmaV3`` of ``model`` when ``cfg.ema`` (created after the model is on its device)."""
    return ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=cfg.ema_warmup) if cfg.ema else None
