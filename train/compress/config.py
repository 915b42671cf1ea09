"""``CompressConfig``: the settings of ``nas prune`` (:func:`train.compress.compress`).

The cost target is a fraction of the original network's MACs (``flops_target``; conv+linear
multiply-adds, the papers' convention) or parameters (``params_target``); LRPET may instead keep a
fixed fraction of every conv's rank (``rank_ratio``). ``nas prune``'s options are generated from these
fields (:mod:`train.compress.cli`).
"""
from __future__ import annotations

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..config_base import ConfigModel, FieldError, literal
from ..data import DataSetName
from .taylor import NORMALIZATIONS

METHODS = ("taylor", "lrpet")
BUDGETS = ("global", "redundancy")
TARGETS = ("flops_target", "params_target", "rank_ratio")


class CompressConfig(ConfigModel):
    """Settings of :func:`train.compress.compress`; a bad value raises ``ValueError("field: problem")``."""

    method: literal(METHODS) = Field("taylor", description="taylor: Taylor channel pruning (Molchanov et al. "
                                                            "2019); lrpet: low-rank training (Guo et al. 2023)")
    flops_target: float | None = Field(None, description="fraction of the MACs to keep (0.6 = keep 60%)")
    params_target: float | None = Field(None, description="fraction of the parameters to keep")
    rank_ratio: float | None = Field(None, description="lrpet: kept fraction of each conv's full rank "
                                                       "min(C_out, C_in·k²)")
    budget: literal(BUDGETS) = Field("global", description="per-layer budget: global Taylor ranking or gradient "
                                                           "redundancy")
    tau: float = Field(0.9, gt=0, le=1, description="redundancy: gradient energy fraction")
    max_ratio: float = Field(0.9, gt=0, lt=1, description="redundancy: largest per-layer ratio")
    normalize: literal(NORMALIZATIONS) = Field("none", description="taylor: per-group score normalisation")
    steps: int = Field(5, ge=1, description="taylor: pruning steps")
    interval: int = Field(30, ge=1, description="taylor: mini-batches before each step")
    redundancy_batches: int = Field(20, ge=1, description="redundancy: mini-batches of gradients")
    finetune_epochs: int = Field(2, ge=0, description="epochs after pruning / of LRPET training")
    data: DataSetName = Field("digits", description="data set (train.data.DATASETS)")
    data_dir: str | None = Field(None, description="where the data set lives (default: NAS_DATA_DIR)")
    batch_size: int = Field(128, ge=1, description="batch size")
    lr: float = Field(0.01, ge=0, description="fine-tuning learning rate")
    momentum: float = Field(0.9, ge=0, description="SGD momentum")
    weight_decay: float = Field(5e-4, ge=0, description="weight decay")
    seed: int = Field(0, description="seed of the data order, augmentation and fine-tuning")
    device: str = Field("cpu", description="cpu, cuda or cuda:N")
    threads: int | None = Field(None, ge=1, description="intra-op CPU threads (default: torch's)")

    @field_validator(*TARGETS)
    @classmethod
    def _fraction(cls, v: float | None, info: ValidationInfo) -> float | None:
        closed = info.field_name == "rank_ratio"  # the full rank is a valid LRPET plan
        if v is not None and not (0 < v < 1 or (closed and v == 1)):
            raise ValueError(f"must be in (0, 1{']' if closed else ')'}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_target(self) -> CompressConfig:
        given = [n for n in TARGETS if getattr(self, n) is not None]
        allowed = TARGETS if self.method == "lrpet" else TARGETS[:2]
        if len(given) != 1 or given[0] not in allowed:
            raise FieldError("flops_target", f"method {self.method} needs exactly one of {' or '.join(allowed)}")
        if self.budget == "redundancy" and self.fraction is None:
            raise FieldError("budget", "redundancy needs flops_target or params_target")
        return self

    @property
    def metric(self) -> str:
        return "params" if self.params_target is not None else "macs"

    @property
    def fraction(self) -> float | None:
        return self.params_target if self.params_target is not None else self.flops_target
