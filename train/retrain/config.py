"""``RetrainConfig``: every setting of a full-scale retraining, named as in timm's ``train.py``.

``batch_size`` is per process, as timm's ``-b``: the global batch is ``batch_size × world size``.
Optimizers are timm's (``timm.optim.list_optimizers()``: sgd = Nesterov SGD, momentum, adamw, lamb,
...), schedules timm's (cosine, step, multistep, poly, tanh, constant; stepped every iteration when
``sched_on_updates``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

AMP_DTYPES = ("none", "bf16", "fp16")
SCHEDULES = ("cosine", "step", "multistep", "poly", "tanh", "constant")
CLIP_MODES = ("norm", "value", "agc")
DATA_SETS = ("digits", "cifar10", "cifar100", "imagefolder")

# Fields that do not change what is trained: they may differ between a run and its resumption.
RUNTIME_FIELDS = frozenset({"data_dir", "workers", "device", "threads", "compile", "eval_batch_size",
                            "log_interval", "tensorboard"})


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of :func:`train.retrain.retrain`; :meth:`check` validates them (``ValueError`` naming the field)."""

    # data
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None
    workers: int = 4
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    opt: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sched: str = "cosine"
    sched_on_updates: bool = True
    warmup_epochs: int = 0
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    decay_epochs: float = 30.0
    decay_milestones: tuple[int, ...] = (30, 60, 90)
    decay_rate: float = 0.1
    # regularisation
    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    grad_clip: float | None = None
    clip_mode: str = "norm"
    ema: bool = False
    ema_decay: float = 0.9998
    ema_warmup: bool = False
    # training methods (train.methods.MethodsConfig; retrain runs them as train.methods callbacks)
    gradinit: bool = False
    gradinit_iters: int = 100
    gradinit_lr: float = 1e-2
    gradinit_gamma: float = 1.0
    gradinit_min_scale: float = 0.01
    lr_rule: str = "none"
    lr_base_batch: int = 128
    elr: str = "off"
    elr_radius: float | None = None
    # speed
    amp: str = "none"
    channels_last: bool | None = None
    compile: bool = False
    sync_bn: bool = False
    # runtime
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    eval_batch_size: int = 256
    log_interval: int = 50
    tensorboard: bool = True

    def check(self) -> "RetrainConfig":
        """Return ``self`` if every field is valid; raise ``ValueError("field: problem")`` otherwise."""
        from timm.optim import list_optimizers

        from train.methods import MethodsConfig

        _choice("data", self.data, DATA_SETS)
        _choice("sched", self.sched, SCHEDULES)
        _choice("amp", self.amp, AMP_DTYPES)
        _choice("clip_mode", self.clip_mode, CLIP_MODES)
        _choice("opt", self.opt.lower(), tuple(list_optimizers()))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _int(name, getattr(self, name), 1)
        for name in ("warmup_epochs", "workers", "log_interval"):
            _int(name, getattr(self, name), 0)
        if self.image_size is not None:
            _int("image_size", self.image_size, 4)
        if self.threads is not None:
            _int("threads", self.threads, 1)
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise ValueError(f"warmup_epochs: must be smaller than epochs ({self.epochs}), got {self.warmup_epochs}")
        _number("lr", self.lr, low=0.0, low_open=True)
        for name in ("weight_decay", "warmup_lr", "min_lr", "mixup", "cutmix", "decay_epochs"):
            _number(name, getattr(self, name), low=0.0)
        for name in ("momentum", "label_smoothing", "mixup_prob", "mixup_switch_prob", "ema_decay", "decay_rate"):
            _number(name, getattr(self, name), low=0.0, high=1.0)
        if self.grad_clip is not None:
            _number("grad_clip", self.grad_clip, low=0.0, low_open=True)
        if self.uses_mixup and self.batch_size % 2:
            raise ValueError(f"batch_size: mixup/cutmix pair samples within a batch and need an even batch_size, "
                             f"got {self.batch_size}")
        MethodsConfig.from_settings(self).check_optimizer(self.opt)
        return self

    @property
    def uses_mixup(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def replace(self, **changes: Any) -> "RetrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (tuples as lists): JSON- and ``torch.load(weights_only=True)``-safe."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RetrainConfig":
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown retrain setting; valid: {', '.join(sorted(names))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def changed_training_fields(self, saved: dict[str, Any]) -> list[str]:
        """Fields (other than :data:`RUNTIME_FIELDS`) whose value differs from the ``saved`` dict."""
        now = self.to_dict()
        return [f.name for f in fields(self)
                if f.name not in RUNTIME_FIELDS and f.name in saved and saved[f.name] != now[f.name]]


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{name}: must be one of {', '.join(valid)}, got {value!r}")


def _int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")


def _number(name: str, value: Any, *, low: float, high: float | None = None, low_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        bound = f"> {low}" if low_open else f">= {low}"
        raise ValueError(f"{name}: must be a number {bound}{f' and <= {high}' if high is not None else ''}, "
                         f"got {value!r}")
