"""What one trial computes: the evaluators its metrics need, cheap ones first (hard constraints checked
after the last of them, before any training), then measured ones, then proxy accuracy with a report per epoch.

The metrics a config needs (:attr:`~search.config.Config.needed_metrics`: objectives, given
``constraints`` and ``select`` limits, the select rule's tie-break) name their evaluators in the metric
table (:mod:`evaluators.metrics`); each is made by its registered ``build`` hook from a
:class:`~evaluators.RunContext`. ``ArchEvaluation`` is a small picklable callable: Ray ships it to the
trial workers without its evaluators, and each process imports the config's ``plugins`` and builds them
once (actors are reused). The driver builds them too, at construction, so a bad setting (a latency
table for other images) stops the run before any trial. A plain in-process loop can call the very same
object (``bench/overhead.py`` does).
"""
from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any, Callable

import torch

from evaluators import Evaluator, RunContext, build_evaluator, list_metrics
from space import Arch

from .config import Config
from .errors import ConfigError
from .faults import FaultInjector, train_with_oom_retry
from .limits import given_limits, import_plugins

Report = Callable[[dict[str, Any]], None]

_DATA_CACHE: dict[tuple, Any] = {}


class ConstraintViolation(ValueError):
    """The architecture exceeds a hard limit of the config's ``constraints``; ``metrics``: what the cheap
    evaluators measured (every limited metric among them)."""

    def __init__(self, message: str, *, metrics: dict[str, Any]) -> None:
        super().__init__(message)
        self.metrics = metrics


def load_data(cfg: Config) -> Any:
    """The config's data set, loaded once per process."""
    from train import load_dataset

    key = (cfg.data.name, cfg.data.data_dir, cfg.data.image_size, cfg.data.download)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(cfg.data.name, data_dir=cfg.data.data_dir, download=cfg.data.download,
                                        image_size=cfg.data.image_size)
    return _DATA_CACHE[key]


class ArchEvaluation:
    """``evaluate(arch, report) -> final metrics`` for one config; reports after every epoch.

    The first objective's evaluator (proxy accuracy) trains last; an out-of-memory retry halves its
    ``batch_size`` and ``lr`` (search/faults.py)."""

    def __init__(self, cfg: Config, *, threads: int | None = None, cache_dir: str | Path | None = None) -> None:
        """``cache_dir``: the run folder, where evaluators keep what the run's trials share (the latency cache,
        so no architecture's latency is measured twice); None: per process only."""
        self.cfg = cfg
        self.threads = threads
        self.cache_dir = Path(cache_dir).resolve() if cache_dir is not None else None
        needed = set(cfg.needed_metrics)
        self.names = list(dict.fromkeys(cfg.evaluator_of(m) for m in list_metrics() if m in needed))  # table order
        self.trainer = cfg.evaluator_of(cfg.objectives[0])
        self._built: dict[str, Evaluator] | None = None
        self._extra: dict[str, Evaluator] = {}
        try:
            _ = self.evaluators  # built here once, so a bad setting fails in the driver, before any trial
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def evaluators(self) -> dict[str, Evaluator]:
        """The config's evaluators by name, built once per process."""
        if self._built is None:
            import_plugins(self.cfg.plugins)
            self._built = {name: self._build(name) for name in self.names}
        return self._built

    def _build(self, name: str) -> Evaluator:
        cfg = self.cfg
        return build_evaluator(name, RunContext(
            data=load_data(cfg), seed=cfg.search.seed, threads=self.threads, settings=cfg.settings_for(name),
            val_fraction=cfg.data.val_fraction, cache_dir=self.cache_dir))

    def evaluator(self, name: str) -> Evaluator:
        """The evaluator ``name`` as the trials build it: one of :attr:`evaluators`, or built here with the same
        context and kept for this process (it is not run by the trials)."""
        if name in self.evaluators:
            return self.evaluators[name]
        if name not in self._extra:
            self._extra[name] = self._build(name)
        return self._extra[name]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": None, "_extra": {}}  # they hold the data set: each process builds its own

    def _check_constraints(self, metrics: dict[str, Any]) -> None:
        for key, metric, bound in given_limits(self.cfg.constraints):
            v = metrics.get(metric.name)
            if v is not None and not metric.within(v, bound):
                sign = ">" if metric.direction == "min" else "<"
                raise ConstraintViolation(f"constraints.{key}: {v:.4g} {sign} {bound:.4g}", metrics=metrics)

    def __call__(self, arch: Arch, report: Report | None = None) -> dict[str, Any]:
        if self.threads:
            torch.set_num_threads(self.threads)
        cfg = self.cfg
        built = self.evaluators
        trainer = built[self.trainer]
        before = sorted((ev for name, ev in built.items() if name != self.trainer), key=lambda ev: not ev.cheap)
        t0 = time.perf_counter()
        metrics: dict[str, Any] = {"arch_id": arch.arch_id}
        for k, ev in enumerate(before):  # cheap ones first; measured latency once per arch, alone on the device
            metrics.update(ev.evaluate(arch))
            if ev.cheap and (k + 1 == len(before) or not before[k + 1].cheap):  # after the last cheap one
                self._check_constraints(metrics)
        metrics["eval_seconds"] = time.perf_counter() - t0
        inject = cfg.faults.inject
        fault = FaultInjector(rate=inject.rate, kinds=inject.kinds, seed=inject.seed).plan(arch.arch_id) \
            if inject is not None else None

        def on_epoch(m: dict[str, Any]) -> None:
            if report is not None:
                report({**metrics, **m})

        def train(batch_size: int, lr: float) -> dict[str, Any]:
            lr = FaultInjector.apply(fault, batch_size=batch_size, configured_batch=trainer.batch_size) or lr
            run = copy.copy(trainer)  # the built one keeps the configured batch and lr for the next trial
            run.batch_size, run.lr = batch_size, lr
            return run.evaluate(arch, report=on_epoch)

        if trainer.cheap:  # a look-up (the NAS-Bench-201 table): nothing to train, pause or retry
            return {**metrics, **trainer.evaluate(arch, report=on_epoch)}
        with contextlib.ExitStack() as stack:  # e.g. with latency.isolate, training pauses while any measurement runs
            for ev in before:
                if hasattr(ev, "training"):
                    stack.enter_context(ev.training())
            final = train_with_oom_retry(train, batch_size=trainer.batch_size, lr=trainer.lr,
                                         retry=cfg.faults.oom_retry)
        return {**metrics, **final}


class Screen:
    """``screen(arch) -> float``: the value of ``metric`` (a cheap one: ``search.screen``) for ``arch``, computed in
    the calling process by the evaluator ``evaluation`` builds for it (the trials' own when they compute the
    metric too); ``candidates``: proposals scored per trial handed to Ray (search/searcher.py). Pickles without
    the evaluator (a Ray Tune checkpoint of the searcher); it is built again on the next call."""

    def __init__(self, evaluation: ArchEvaluation, *, metric: str, candidates: int) -> None:
        self.evaluation, self.metric, self.candidates = evaluation, metric, int(candidates)
        self._evaluator: Evaluator | None = None

    @classmethod
    def from_config(cls, evaluation: ArchEvaluation) -> Screen | None:
        """The config's ``search.screen`` (None when it is off), its evaluator built now, so a bad setting stops
        the run (ConfigError) before any trial."""
        section = evaluation.cfg.search.screen
        if section is None:
            return None
        screen = cls(evaluation, metric=section.metric, candidates=section.candidates)
        try:
            screen._built()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return screen

    def _built(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = self.evaluation.evaluator(self.evaluation.cfg.evaluator_of(self.metric))
        return self._evaluator

    def __call__(self, arch: Arch) -> float:
        return float(self._built().evaluate(arch)[self.metric])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_evaluator": None}
