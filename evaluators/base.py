"""The one evaluator contract (archai's ``ModelEvaluator``) and the dict-backed evaluator registry.

An evaluator has a ``name``, says whether it is ``cheap`` (milliseconds, no training: only cheap
evaluators may carry hard constraints) and maps ``(arch, budget)`` to named numbers. ``budget`` is
the evaluator's own fidelity unit (epochs for accuracy) and is ignored by evaluators that have none.
Evaluators that run for a while call ``report(dict)`` with intermediate results so that a
scheduler can stop the trial early.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Protocol, runtime_checkable

import torch

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


_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def resolve_device(device: str, *, field: str) -> torch.device:
    """Validate a device string (``cpu``, ``cuda`` or ``cuda:N``) and return the ``torch.device``.

    Raises ``ValueError`` naming ``field`` for a malformed string, and saying that CUDA is
    unavailable (or that index N does not exist) when it is.
    """
    m = _DEVICE.match(device.strip().lower()) if isinstance(device, str) else None
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"{field}: must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if m.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{field}: {device!r} requested but CUDA is unavailable on this machine; use 'cpu'")
    index = int(m.group(2)) if m.group(2) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ValueError(f"{field}: {device!r} requested but only {torch.cuda.device_count()} CUDA "
                         f"device(s) exist (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def check_positive_int(value: Any, field: str, *, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``; ``ValueError`` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")
    return value
