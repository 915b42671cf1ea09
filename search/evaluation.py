"""What one trial computes: cheap complexity (with hard constraints), latency, then proxy accuracy.

``ArchEvaluation`` is a small picklable callable built from the config; Ray ships it to the trial
workers, where it builds its evaluators once per process (actors are reused). A plain in-process
loop can call the very same object (``bench/overhead.py`` does).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from space import Arch

from .config import Config
from .faults import FaultInjector, train_with_oom_retry
from evaluators.latency_service import LatencyService

Report = Callable[[dict[str, Any]], None]

_DATA_CACHE: dict[tuple, Any] = {}


class ConstraintViolation(ValueError):
    """The architecture exceeds a hard limit of the config's ``constraints``."""


def load_data(cfg: Config) -> Any:
    """The config's data set, loaded once per process."""
    from train import load_dataset

    key = (cfg.data.name, cfg.data.data_dir, cfg.data.image_size, cfg.data.download)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, download=cfg.data.download,
                                        image_size=cfg.data.image_size)
    return _DATA_CACHE[key]


class ArchEvaluation:
    """``evaluate(arch, report) -> final metrics`` for one config; reports after every epoch."""

    def __init__(self, cfg: Config, *, threads: int | None = None, latency_cache: str | Path | None = None) -> None:
        """``latency_cache``: SQLite file shared by the run's trials so no architecture's latency is measured
        twice (None: per process only). In predict mode the table is loaded here and travels with ``self``."""
        self.cfg = cfg
        self.threads = threads
        self.latency = LatencyService.from_config(cfg, cache_path=latency_cache)
        if cfg.latency.mode == "predict":
            from evaluators.latency_table import LatencyPredictor

            from .errors import ConfigError

            data = load_data(cfg)
            try:
                LatencyPredictor(self.latency.table).check_problem(in_chans=data.in_chans, num_classes=data.num_classes)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None

    def __call__(self, arch: Arch, report: Report | None = None) -> dict[str, Any]:
        from evaluators import AccuracyEvaluator, ComplexityEvaluator
        from train.methods import MethodRunner

        if self.threads:
            torch.set_num_threads(self.threads)
        cfg = self.cfg
        data = load_data(cfg)
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {"arch_id": arch.arch_id}
        metrics.update(ComplexityEvaluator(num_classes=data.num_classes, in_chans=data.in_chans).evaluate(arch))
        for key in ("params", "macs"):
            limit = getattr(cfg.constraints, f"max_{key}")
            if limit is not None and metrics[key] > limit:
                raise ConstraintViolation(f"constraints.max_{key}: {metrics[key]:.4g} > {limit:.4g}")
        limit = cfg.constraints.max_latency_ms  # only with the cheap predicted latency (config checks)
        if "latency_ms" in cfg.objectives or limit is not None:  # measured once per arch, alone on the device
            metrics.update(self.latency.evaluate(arch, in_chans=data.in_chans, num_classes=data.num_classes))
            if limit is not None and metrics["latency_ms"] > limit:
                raise ConstraintViolation(f"constraints.max_latency_ms: {metrics['latency_ms']:.4g} > {limit:.4g}")
        metrics["eval_seconds"] = time.perf_counter() - t0
        p = cfg.proxy
        methods = p.methods
        inject = cfg.faults.inject
        fault = FaultInjector(rate=inject.rate, kinds=inject.kinds, seed=inject.seed).plan(arch.arch_id) \
            if inject is not None else None

        def on_epoch(m: dict[str, Any]) -> None:
            if report is not None:
                report({**metrics, **m})

        def train(batch_size: int, lr: float) -> dict[str, Any]:
            lr = FaultInjector.apply(fault, batch_size=batch_size, configured_batch=p.batch_size) or lr
            acc = AccuracyEvaluator(data=data, epochs=p.epochs, batch_size=batch_size, lr=lr, momentum=p.momentum,
                                    weight_decay=p.weight_decay, val_fraction=cfg.data.val_fraction,
                                    seed=cfg.search.seed, device=p.device, threads=self.threads, methods=methods)
            return acc.evaluate(arch, report=on_epoch)

        lr = MethodRunner(methods).scaled_lr(p.lr, p.batch_size)  # once: an OOM retry halves it linearly
        with self.latency.training():  # with latency.isolate, training pauses while any measurement runs
            final = train_with_oom_retry(train, batch_size=p.batch_size, lr=lr, retry=cfg.faults.oom_retry)
        return {**metrics, **final}
