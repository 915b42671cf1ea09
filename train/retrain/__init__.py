"""Retrain an exported architecture at full scale with timm's training parts.

``retrain(arch, RetrainConfig(...), out_dir=...)`` — or ``nas retrain ARCH --out DIR`` — trains from
scratch on the whole training split and reports test accuracy: timm optimizers, schedules,
label smoothing, mixup/cutmix, EMA and gradient clipping; AMP (bf16/fp16) and channels_last;
optional ``torch.compile``; ``torchrun`` data parallelism (NCCL/gloo) with world-size-independent
batches; a checkpoint every epoch that resumes exactly; progress, metrics.csv/json, TensorBoard.
Training methods plug in as :class:`Callback` s.
"""
from .callbacks import Callback, RetrainContext
from .checkpoint import CHECKPOINT, load_checkpoint, rng_state, set_rng_state
from .config import RetrainConfig
from .distributed import DistInfo, init_distributed, launch
from .loader import ShardedTensorLoader, make_eval_loader, make_train_loader
from .loop import retrain, train_epoch
from .methods import ElrCallback, GradInitCallback, LrRuleCallback, method_callbacks
from .parts import create_loss, create_optimizer, create_precision, create_scheduler, param_groups

__all__ = [
    "CHECKPOINT", "Callback", "DistInfo", "ElrCallback", "GradInitCallback", "LrRuleCallback", "RetrainConfig",
    "RetrainContext", "ShardedTensorLoader", "create_loss", "create_optimizer", "create_precision",
    "create_scheduler", "init_distributed", "launch", "load_checkpoint", "make_eval_loader", "make_train_loader",
    "method_callbacks", "param_groups", "retrain", "rng_state", "set_rng_state", "train_epoch",
]
