"""The one evaluator contract (archai's ``ModelEvaluator``), the dict-backed evaluator registry and the
context a search builds evaluators from.

An evaluator has a ``name``, says whether it is ``cheap`` (milliseconds, no training: only cheap
evaluators may carry hard constraints) and maps ``(arch, budget)`` to named numbers. ``budget`` is
the evaluator's own fidelity unit (epochs for accuracy) and is ignored by evaluators that have none.
Evaluators that run for a while call ``report(dict)`` with intermediate results so that a
scheduler can stop the trial early. An evaluator may also offer ``training()``: a context manager the
search holds around the trial's training (the latency gate pauses training while it measures).

Each registration declares the evaluator's metrics (:mod:`.metrics`) and, for use in a search, a
``build(ctx)`` hook that makes it from a :class:`RunContext`, so the search builds any registered
evaluator without knowing its constructor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, runtime_checkable

from space import Arch
from space.registry import Registry
from train.data import DataBundle

from .metrics import Metric, add_alternative, add_metrics, metric_evaluator

Report = Callable[[dict], None]


@runtime_checkable
class Evaluator(Protocol):
    """``evaluate(arch, budget=None, *, report=None) -> dict[str, float]``; ``name``; ``cheap``.

    Structural: any object with these members is an evaluator (fakes in tests need not subclass).
    """

    name: str
    cheap: bool

    def evaluate(self, arch: Arch, budget: int | None = None, *,
                 report: Report | None = None) -> dict[str, float]:
        ...


@dataclass(frozen=True)
class RunContext:
    """What a search hands an evaluator's ``build`` hook.

    ``data``: the run's data set; ``seed``: the search seed; ``threads``: torch threads of a trial (None:
    leave them); ``settings``: the config section the evaluator registered with ``settings=`` (None if
    none); ``val_fraction``: the validation share of the training split; ``cache_dir``: the run folder,
    where an evaluator may keep a cache its trials share (None: per process only).
    """

    data: DataBundle
    seed: int = 0
    threads: int | None = None
    settings: Any = None
    val_fraction: float = 0.2
    cache_dir: Path | None = None

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def in_chans(self) -> int:
        return self.data.in_chans


Build = Callable[[RunContext], Evaluator]

EVALUATORS: Registry[Any] = Registry("evaluator")
"""Name -> evaluator class. Entry meta: ``metrics`` (its :class:`~.metrics.Metric` records), ``build``,
``settings``, ``cheap_when``, ``cheap_hint`` (see :func:`register_evaluator`) and ``example``, a
zero-argument callable giving constructor kwargs for a tiny 1-channel, 16×16, 10-class problem: the
contract test builds each entry with it; ``example_arch``, optional, a zero-argument callable giving the
architecture the contract test evaluates (default: a WRN-10-1 at 16×16) for an evaluator of one family only."""


def register_evaluator(name: str, cls: Any, *, metrics: Iterable[Metric], build: Build | None = None,
                       settings: str | None = None, settings_model: type | None = None, alternative: bool = False,
                       cheap_when: Callable[[Any], bool] | None = None, cheap_hint: str = "", doc: str = "",
                       **meta: Any) -> Any:
    """Register an evaluator class under ``name`` (normalised; a duplicate warns and replaces).

    ``metrics``: what ``evaluate`` returns. ``build(ctx)``: makes the evaluator for a search from a
    :class:`RunContext`; with it the metrics enter the table (:data:`~.metrics.METRICS`). ``settings``:
    the search config section passed as ``ctx.settings`` (``"proxy"``, ``"latency"``). ``settings_model``: a
    pydantic model of the evaluator's own settings; then ``settings`` names a key of the config's generic
    ``evaluators:`` mapping (``evaluators: {zero_cost: {batch_size: 64}}``), validated by the model (defaults
    when the key is absent), instead of a section of its own. ``alternative``: its metrics are already in the
    table, computed by default by another evaluator; a config picks this one instead with
    ``metric_evaluators: {METRIC: NAME}`` (the NAS-Bench-201 table for ``val_acc``). ``cheap_when(settings)``:
    for an evaluator whose cost depends on its settings, whether it is cheap under them (latency in predict
    mode), which makes its limit-able metrics possible hard constraints; ``cheap_hint`` says how to make it
    cheap, for the error when it is not.
    """
    metrics = list(metrics)
    if settings_model is not None and settings is None:
        raise ValueError(f"evaluator {name!r}: settings_model needs settings= (its key under evaluators:)")
    if build is not None:
        (add_alternative if alternative else add_metrics)(name, metrics)
    return EVALUATORS.register(name, cls, doc=doc, metrics=tuple(metrics), build=build, settings=settings,
                               settings_model=settings_model, cheap_when=cheap_when, cheap_hint=cheap_hint, **meta)


def create_evaluator(name: str, **kwargs: Any) -> Evaluator:
    """Instantiate the evaluator registered as ``name``; ``ValueError`` listing valid names otherwise."""
    return EVALUATORS.get(name)(**kwargs)


def list_evaluators() -> list[str]:
    """Names of every registered evaluator, sorted."""
    return EVALUATORS.names()


def build_evaluator(name: str, ctx: RunContext) -> Evaluator:
    """The evaluator ``name`` made for a search by its ``build`` hook."""
    entry = EVALUATORS.entry(name)
    if entry.meta.get("build") is None:
        raise ValueError(f"evaluator {entry.name!r}: has no build hook, so a search cannot use it")
    return entry.meta["build"](ctx)


def settings_key(name: str) -> str | None:
    """The search config section evaluator ``name`` reads (``ctx.settings``), or None."""
    return EVALUATORS.entry(name).meta.get("settings")


def settings_models() -> dict[str, type]:
    """Key of the config's ``evaluators:`` mapping → the pydantic model its evaluators registered for it."""
    out: dict[str, type] = {}
    for name in EVALUATORS.names():
        meta = EVALUATORS.entry(name).meta
        if meta.get("settings_model") is not None:
            out[meta["settings"]] = meta["settings_model"]
    return out


def settings_model(name: str) -> type | None:
    """The pydantic model of evaluator ``name``'s settings under ``evaluators:`` (None: its own section, or none)."""
    return EVALUATORS.entry(name).meta.get("settings_model")


def may_be_cheap(metric: Metric) -> bool:
    """``metric`` is cheap, or its evaluator is under some settings (so it may carry a hard constraint)."""
    return metric.cheap or EVALUATORS.entry(metric_evaluator(metric.name)).meta.get("cheap_when") is not None


def cheap_under(metric: Metric, settings: Any) -> bool:
    """``metric`` is known without training when its evaluator runs with ``settings``."""
    when = EVALUATORS.entry(metric_evaluator(metric.name)).meta.get("cheap_when")
    return metric.cheap or (when is not None and bool(when(settings)))


def cheap_hint(metric: Metric) -> str:
    """How to make ``metric``'s evaluator cheap ('' when it cannot be)."""
    return EVALUATORS.entry(metric_evaluator(metric.name)).meta.get("cheap_hint", "")
