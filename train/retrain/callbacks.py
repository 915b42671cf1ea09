"""How a training method plugs into :func:`train.retrain.retrain`: a :class:`Callback` and its context.

A method (GradInit, an LR-scaling rule, effective-LR control, ...) subclasses :class:`Callback` and
overrides the hooks it needs; ``retrain(..., callbacks=[...])`` calls them in list order:

- ``configure(cfg, world_size=...)`` before anything is built: may return a changed config (an
  LR-scaling rule returns ``cfg.replace(lr=...)`` from the global batch);
- ``param_claims(model, example)`` once the model exists (on the CPU; ``example`` is an all-zero batch
  of two inputs), before the optimizer groups are made: groups in the ``nas_param_groups()`` form
  (``params`` and optionally ``lr_scale``, ``weight_decay``) that override the defaults for those
  parameters (e.g. no weight decay on the weights a fixed-ELR method keeps on a sphere);
- ``on_start(ctx)`` once everything is built (and, on ``--resume``, restored; ``ctx.resumed``
  says which), before the first epoch of this process — a data-dependent init runs here when
  ``not ctx.resumed``;
- ``on_epoch_start(ctx)``; ``on_step_end(ctx, loss)`` after every optimizer step (``loss`` is the
  step's loss tensor: reading it forces a device sync); ``on_epoch_end(ctx, row)`` after the test
  evaluation, before logging and the checkpoint — it may add metrics to ``row``;
- ``state_dict()``/``load_state_dict()``: plain data saved in and restored from each checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from space import Arch
    from train import DataBundle

    from .config import RetrainConfig
    from .distributed import DistInfo
    from .parts import Precision


@dataclass
class RetrainContext:
    """Everything a running retrain holds. ``model`` is the bare network (what is saved);
    ``train_model`` what the training forward runs through (``DistributedDataParallel`` and/or
    ``torch.compile`` around ``model``). ``epoch`` counts completed epochs."""

    cfg: RetrainConfig
    arch: Arch
    data: DataBundle
    info: DistInfo
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_loader: Any
    precision: Precision
    out_dir: Path
    out: Callable[[str], None]
    ema: nn.Module | None = None
    epoch: int = 0
    num_updates: int = 0
    resumed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class Callback:
    """A training method's hooks into retrain; each default does nothing (see module doc)."""

    def configure(self, cfg: RetrainConfig, *, world_size: int) -> RetrainConfig:
        return cfg

    def param_claims(self, model: nn.Module, example: torch.Tensor) -> list[dict[str, Any]]:
        return []

    def on_start(self, ctx: RetrainContext) -> None:
        pass

    def on_epoch_start(self, ctx: RetrainContext) -> None:
        pass

    def on_step_end(self, ctx: RetrainContext, loss: torch.Tensor) -> None:
        pass

    def on_epoch_end(self, ctx: RetrainContext, row: dict[str, Any]) -> None:
        pass

    def final_model(self, ctx: RetrainContext) -> tuple[Arch, nn.Module] | None:
        """The ``(arch, model)`` to save at the end instead of the trained one (a compressed form), or None."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
