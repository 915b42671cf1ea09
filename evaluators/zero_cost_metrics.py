"""Zero-cost proxies as cheap evaluators: one metric per proxy of :mod:`evaluators.zero_cost` (``synflow``,
``jacob_cov``, ``naswot``, ``grad_norm``, ``snip``, ``grasp``, ``fisher``), each scored on the untrained network
(Abdelfattah et al., ICLR 2021; Mellor et al., ICML 2021). Higher is predicted better for every one.

The batch is drawn once per process from the run's *training* split with the run's seed (the first batch of the
seeded, shuffled, un-augmented training loader over the same split as proxy training, so the validation images
are never scored); its size is ``evaluators: {zero_cost: {batch_size: N}}`` in the search config (default 64,
the authors' CIFAR batch). The network is built and scored with the run's seed, so a score is a pure function of
``(arch, seed)``. The complexity baselines of the paper (params, MACs) are the complexity evaluator's metrics.
"""
from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from space import Arch, build_model
from train.checks import check_positive_int
from train.config_base import ConfigModel
from train.data import DataBundle, make_loaders

from .base import RunContext, register_evaluator
from .metrics import Metric
from .zero_cost import score

SCORED = ("synflow", "jacob_cov", "naswot", "grad_norm", "snip", "grasp", "fisher")
"""The proxies registered as metrics (``params``/``macs`` are the complexity evaluator's)."""
LABELS = {"synflow": "SynFlow score", "jacob_cov": "Jacobian covariance score", "naswot": "NASWOT score",
          "grad_norm": "gradient norm", "snip": "SNIP score", "grasp": "GraSP score", "fisher": "Fisher score"}


class ZeroCostSettings(ConfigModel):
    """``evaluators: {zero_cost: {...}}``: the scoring batch (``batch_size`` training images)."""

    batch_size: int = Field(64, ge=2, description="images in the one scoring batch (the authors': 64)")


def training_batch(data: DataBundle, *, batch_size: int, val_fraction: float, seed: int) -> tuple[torch.Tensor,
                                                                                                   torch.Tensor]:
    """The first batch of the seeded, un-augmented training loader over the training part of the split."""
    loader, _ = make_loaders(data, batch_size=batch_size, val_fraction=val_fraction, seed=seed, augment=False)
    return next(iter(loader))


class ZeroCostEvaluator:
    """Cheap evaluator: ``{proxy: score}`` of the network built from ``arch`` with ``seed``, on one batch."""

    cheap = True

    def __init__(self, *, proxy: str, data: DataBundle, batch_size: int = 64, val_fraction: float = 0.2,
                 seed: int = 0, threads: int | None = None) -> None:
        if proxy not in SCORED:
            raise ValueError(f"proxy: must be one of {', '.join(SCORED)}, got {proxy!r}")
        self.name = self.proxy = proxy
        self.data = data
        self.batch_size = check_positive_int(batch_size, "zero_cost.batch_size", minimum=2)
        self.val_fraction, self.seed, self.threads = float(val_fraction), int(seed), threads
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def evaluate(self, arch: Arch, budget: int | None = None, *, report: Any = None) -> dict[str, float]:
        """``budget`` and ``report`` are ignored (nothing is trained)."""
        if self._batch is None:  # drawn once per evaluator
            self._batch = training_batch(self.data, batch_size=self.batch_size, val_fraction=self.val_fraction,
                                         seed=self.seed)
        batch = self._batch
        prev = torch.get_num_threads()
        try:
            if self.threads is not None:
                torch.set_num_threads(self.threads)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                model = build_model(arch, num_classes=self.data.num_classes, in_chans=self.data.in_chans)
            return {self.proxy: float(score(self.proxy, model, batch, seed=self.seed))}
        finally:
            torch.set_num_threads(prev)


def _builder(proxy: str):
    def build(ctx: RunContext) -> ZeroCostEvaluator:
        return ZeroCostEvaluator(proxy=proxy, data=ctx.data, batch_size=ctx.settings.batch_size,
                                 val_fraction=ctx.val_fraction, seed=ctx.seed, threads=ctx.threads)
    return build


def _example(proxy: str):
    def example() -> dict[str, Any]:
        from train.data import load_dataset

        return {"proxy": proxy, "data": load_dataset("digits"), "batch_size": 8}
    return example


def _register(proxy: str, **fmt: Any) -> None:
    register_evaluator(proxy, ZeroCostEvaluator, metrics=[
        Metric(proxy, "max", label=LABELS[proxy], limit=True, cheap=True, **fmt)],
        build=_builder(proxy), settings="zero_cost", settings_model=ZeroCostSettings, example=_example(proxy),
        doc=f"zero-cost proxy {proxy} of the untrained network on one training batch")


_register("synflow", fmt="{:.4g}", log=True)  # a product over layers: spans hundreds of orders of magnitude
_register("jacob_cov", fmt="{:.4g}")
_register("naswot", fmt="{:.4g}")
_register("grad_norm", fmt="{:.4g}")
_register("snip", fmt="{:.4g}")
_register("grasp", fmt="{:.4g}")
_register("fisher", fmt="{:.4g}")
