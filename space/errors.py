"""The one error type of the spec layer: it names the offending field."""
from __future__ import annotations


class SpecError(ValueError):
    """An invalid architecture spec; ``field`` is a dotted path such as ``stages[1].width``."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
