"""``RetrainConfig``: every setting of a full-scale retraining, named as in timm's ``train.py``.

``batch_size`` is per process, as timm's ``-b``: the global batch is ``batch_size × world size``.
Optimizers are timm's (``timm.optim.list_optimizers()``: sgd = Nesterov SGD, momentum, adamw, lamb,
...), schedules timm's (cosine, step, multistep, poly, tanh, constant; stepped every iteration when
``sched_on_updates``). The training methods are the nested ``methods`` section
(:class:`train.methods.MethodsConfig`). ``nas retrain``'s options are generated from these fields
(:mod:`train.retrain.cli`).
"""
from __future__ import annotations

from typing import Any

from pydantic import Field, PositiveInt, field_validator, model_validator

from ..config_base import ConfigModel, FieldError, literal
from ..data import DataSetName
from ..methods.runner import MethodsConfig

AMP_DTYPES = ("none", "bf16", "fp16")
SCHEDULES = ("cosine", "step", "multistep", "poly", "tanh", "constant")
CLIP_MODES = ("norm", "value", "agc")
AmpDtype, Schedule, ClipMode = literal(AMP_DTYPES), literal(SCHEDULES), literal(CLIP_MODES)

# Fields that do not change what is trained: they may differ between a run and its resumption.
RUNTIME_FIELDS = frozenset({"data_dir", "workers", "device", "threads", "compile", "eval_batch_size",
                            "log_interval", "tensorboard", "onnx"})


class RetrainConfig(ConfigModel):
    """Settings of :func:`train.retrain.retrain`; a bad value raises ``ValueError("field: problem")``."""

    # data
    data: DataSetName = Field("digits", description="data set (train.data.DATASETS)")
    data_dir: str | None = Field(None, description="where the data set lives (default: NAS_DATA_DIR)")
    image_size: int | None = Field(None, ge=4, description="resize the images (default: the data set's size)")
    workers: int = Field(4, ge=0, description="loader workers (file-backed data only)")
    # optimisation
    epochs: int = Field(10, ge=1, description="training epochs")
    batch_size: int = Field(128, ge=1, description="batch size per process")
    opt: str = Field("sgd", description="a timm optimizer: sgd (Nesterov), momentum, adamw, lamb, ...")
    lr: float = Field(0.1, gt=0, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, le=1, description="SGD momentum (Adam's beta1)")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay (none on biases and norm parameters)")
    sched: Schedule = Field("cosine", description="timm learning-rate schedule")
    sched_on_updates: bool = Field(True, description="step the schedule every iteration rather than every epoch")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs from warmup_lr")
    warmup_lr: float = Field(1e-5, ge=0, description="learning rate at the start of the warm-up")
    min_lr: float = Field(0.0, ge=0, description="lowest learning rate of the schedule")
    decay_epochs: float = Field(30.0, ge=0, description="step schedule interval (epochs)")
    decay_milestones: tuple[PositiveInt, ...] = Field((30, 60, 90), description="multistep schedule epochs")
    decay_rate: float = Field(0.1, ge=0, le=1, description="step/multistep decay factor")
    # regularisation
    label_smoothing: float = Field(0.0, ge=0, le=1, description="label smoothing")
    mixup: float = Field(0.0, ge=0, description="mixup alpha (0 = off)")
    cutmix: float = Field(0.0, ge=0, description="cutmix alpha (0 = off)")
    mixup_prob: float = Field(1.0, ge=0, le=1, description="probability of mixup or cutmix per batch")
    mixup_switch_prob: float = Field(0.5, ge=0, le=1, description="probability of cutmix when both are on")
    grad_clip: float | None = Field(None, gt=0, description="gradient clipping threshold (default: off)")
    clip_mode: ClipMode = Field("norm", description="gradient clipping mode")
    ema: bool = Field(False, description="keep an exponential moving average of the weights (timm ModelEmaV3)")
    ema_decay: float = Field(0.9998, ge=0, le=1, description="EMA decay")
    ema_warmup: bool = Field(False, description="EMA decay warm-up")
    # training methods (train.methods; retrain runs them as callbacks)
    methods: MethodsConfig = Field(default_factory=MethodsConfig, description="training methods")
    # low-rank training from scratch (LRPET; train.compress.lrpet)
    lrpet_target: float | None = Field(None, gt=0, lt=1, description="train low-rank from scratch with LRPET "
                                       "(projection every epoch) to this fraction of the MACs; OUT/arch.yaml and "
                                       "model.pt are the factorised network (default: off)")
    lrpet_rank: float | None = Field(None, gt=0, le=1, description="as lrpet_target, with this rank ratio "
                                     "(rank = ratio × min(C_out, C_in·k²) per block conv) instead of a MACs target")
    # speed
    amp: AmpDtype = Field("none", description="autocast dtype")
    channels_last: bool | None = Field(None, description="channels_last memory format (default: on for CUDA)")
    compile: bool = Field(False, description="torch.compile the model (slow first epoch)")
    sync_bn: bool = Field(False, description="SyncBatchNorm across processes (CUDA)")
    # runtime
    seed: int = Field(0, description="seed of the weights, data order and augmentation")
    device: str = Field("cpu", description="cpu, cuda or cuda:N (under torchrun: cuda → cuda:LOCAL_RANK)")
    threads: int | None = Field(None, ge=1, description="intra-op CPU threads (default: torch's)")
    eval_batch_size: int = Field(256, ge=1, description="batch size of the test evaluation")
    log_interval: int = Field(50, ge=0, description="steps between progress lines when not on a terminal")
    tensorboard: bool = Field(True, description="write TensorBoard logs to OUT/tb")
    onnx: bool = Field(False, description="also write OUT/model.onnx (opset 18, dynamic batch) at the end")

    @field_validator("opt")
    @classmethod
    def _timm_optimizer(cls, v: str) -> str:
        from timm.optim import list_optimizers

        valid = list_optimizers()
        if v.lower() not in valid:
            raise ValueError(f"must be one of {', '.join(valid)}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _together(self) -> RetrainConfig:
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise FieldError("warmup_epochs", f"must be smaller than epochs ({self.epochs}), got {self.warmup_epochs}")
        if self.uses_mixup and self.batch_size % 2:
            raise FieldError("batch_size", f"mixup/cutmix pair samples within a batch and need an even batch_size, "
                                           f"got {self.batch_size}")
        if self.lrpet_target is not None and self.lrpet_rank is not None:
            raise FieldError("lrpet_rank", "give lrpet_target or lrpet_rank, not both")
        try:
            self.methods.check_optimizer(self.opt)
        except FieldError as exc:
            raise FieldError(f"methods.{exc.field}", exc.problem) from None
        return self

    @property
    def lrpet(self) -> bool:
        """Whether the run trains low-rank from scratch (LRPET)."""
        return self.lrpet_target is not None or self.lrpet_rank is not None

    @property
    def uses_mixup(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def changed_training_fields(self, saved: dict[str, Any]) -> list[str]:
        """Fields (other than :data:`RUNTIME_FIELDS`) whose value differs from the ``saved`` dict."""
        now = self.to_dict()
        return [name for name in type(self).model_fields
                if name not in RUNTIME_FIELDS and name in saved and saved[name] != now[name]]
