"""The one error type of the spec layer (it names the offending field), and the positive-integer check."""
from __future__ import annotations

from typing import Any


class SpecError(ValueError):
    """An invalid architecture spec; ``field`` is a dotted path such as ``stages[1].width``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def check_positive_int(value: Any, field: str, *, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``; ``ValueError`` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")
    return value
