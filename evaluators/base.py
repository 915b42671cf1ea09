"""The one evaluator contract (archai's ``ModelEvaluator``) and the dict-backed evaluator registry.

An evaluator has a ``name``, says whether it is ``cheap`` (milliseconds, no training: only cheap
evaluators may carry hard constraints) and maps ``(arch, budget)`` to named numbers. ``budget`` is
the evaluator's own fidelity unit (epochs for accuracy) and is ignored by evaluators that have none.
Evaluators that run for a while call ``report(dict)`` with intermediate results so that a
scheduler can stop the trial early.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from space import Arch
from space.registry import Registry


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


EVALUATORS: Registry[Any] = Registry("evaluator")
"""Name -> evaluator class. Entry ``meta["example"]`` is a zero-argument callable giving constructor
kwargs for a tiny 1-channel, 16×16, 10-class problem: the contract test builds each entry with it."""


def register_evaluator(name: str, cls: Any, *, doc: str = "", **meta: Any) -> Any:
    """Register an evaluator class under ``name`` (normalised; a duplicate warns and replaces)."""
    return EVALUATORS.register(name, cls, doc=doc, **meta)


def create_evaluator(name: str, **kwargs: Any) -> Evaluator:
    """Instantiate the evaluator registered as ``name``; ``ValueError`` listing valid names otherwise."""
    return EVALUATORS.get(name)(**kwargs)


def list_evaluators() -> list[str]:
    """Names of every registered evaluator, sorted."""
    return EVALUATORS.names()
