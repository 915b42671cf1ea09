"""What one trial computes: cheap complexity (with hard constraints), latency, then proxy accuracy.

``ArchEvaluation`` is a small picklable callable built from the config; Ray ships it to the trial
workers, where it builds its evaluators once per process (actors are reused). A plain in-process
loop can call the very same object (``bench/overhead.py`` does).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from space import Arch

from .config import Config

Report = Callable[[dict[str, Any]], None]

_DATA_CACHE: dict[tuple, Any] = {}
_LATENCY_CACHE: dict[tuple, dict[str, float]] = {}


class ConstraintViolation(ValueError):
    """The architecture exceeds a hard limit of the config's ``constraints``."""


def load_data(cfg: Config) -> Any:
    """The config's data set, loaded once per process."""
    from evaluators import load_dataset

    key = (cfg.data.name, cfg.data.data_dir, cfg.data.image_size, cfg.data.download)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, download=cfg.data.download,
                                        image_size=cfg.data.image_size)
    return _DATA_CACHE[key]


class ArchEvaluation:
    """``evaluate(arch, report) -> final metrics`` for one config; reports after every epoch."""

    def __init__(self, cfg: Config, *, threads: int | None = None) -> None:
        self.cfg = cfg
        self.threads = threads

    def __call__(self, arch: Arch, report: Report | None = None) -> dict[str, Any]:
        from evaluators import AccuracyEvaluator, ComplexityEvaluator, LatencyEvaluator

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
        if "latency_ms" in cfg.objectives:
            lat = cfg.latency
            key = (arch.arch_id, lat.device, tuple(lat.batch_sizes), arch.input_size, lat.threads)
            if key not in _LATENCY_CACHE:
                _LATENCY_CACHE[key] = LatencyEvaluator(
                    num_classes=data.num_classes, in_chans=data.in_chans, device=lat.device,
                    batch_sizes=tuple(lat.batch_sizes), warmup=lat.warmup, repeats=lat.repeats,
                    threads=lat.threads).evaluate(arch)
            metrics.update(_LATENCY_CACHE[key])
        metrics["eval_seconds"] = time.perf_counter() - t0
        p = cfg.proxy
        acc = AccuracyEvaluator(data=data, epochs=p.epochs, batch_size=p.batch_size, lr=p.lr, momentum=p.momentum,
                                weight_decay=p.weight_decay, val_fraction=cfg.data.val_fraction,
                                seed=cfg.search.seed, device=p.device, threads=self.threads)

        def on_epoch(m: dict[str, Any]) -> None:
            if report is not None:
                report({**metrics, **m})

        final = acc.evaluate(arch, report=on_epoch)
        return {**metrics, **final}
