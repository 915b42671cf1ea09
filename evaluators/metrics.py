"""The metric table: every number a search can optimise, limit, record or plot, declared where it is computed.

An evaluator registers with the metrics it returns (``register_evaluator(name, cls, metrics=[Metric(...)],
build=...)``). Everything downstream reads this table, so a metric is usable with no other edit: as an
objective (``direction``), as a ``select:`` budget and, when ``cheap``, a hard ``constraints:`` limit
(``limit``: keys ``max_<name>`` for "min" metrics, ``min_<name>`` for "max" ones), as a recorded trial
attribute and ``trials.csv`` column, as a report axis (``label``, ``scale``, ``log``) and in the progress
line (:meth:`Metric.format`). A new metric is one file in ``evaluators/`` (every module there is imported
with the package) ending in its register line::

    register_evaluator("depth", DepthEvaluator, build=lambda ctx: DepthEvaluator(),
                       metrics=[Metric("depth", "min", label="blocks", cheap=True)])

Only an evaluator with a ``build`` hook puts its metrics into the table (the search builds it to compute
them); an evaluator without one (the predicted latency, which the latency evaluator uses in predict mode)
declares its metrics for the contract test only. A module outside ``evaluators/`` is named in the search
config's ``plugins:`` list: the search imports it in the driver while validating the config and in every
trial process before building evaluators (Ray's trial workers are other processes), so its register line
runs wherever the metric is computed or read back. The ``select:``/``constraints:`` keys are made when
the search config module is first imported, so they exist for every metric of ``evaluators/`` but not
for plugins (a plugin metric is an objective, a recorded value, a column and an axis, not a limit).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

DIRECTIONS = ("max", "min")


@dataclass(frozen=True)
class Metric:
    """One named number an evaluator returns.

    ``direction``: ``"max"``/``"min"`` (usable as an objective) or ``None`` (recorded only, e.g. epochs).
    ``label``: axis label, with the unit after scaling. ``unit``: unit of the raw value (``"ms"``, ``"s"``,
    ``""`` for counts and fractions). ``limit``: may carry a ``select:`` budget (and a hard ``constraints:``
    limit when ``cheap``). ``cheap``: known without training (milliseconds). ``scale``/``fmt``: shown as
    ``fmt.format(value / scale)``; ``log``: plotted on a log axis.
    """

    name: str
    direction: str | None
    label: str = ""
    unit: str = ""
    limit: bool = False
    cheap: bool = False
    scale: float = 1.0
    fmt: str = "{:.4f}"
    log: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"metric.name: must be a Python identifier (it is a config key and a column), "
                             f"got {self.name!r}")
        if self.direction not in (*DIRECTIONS, None):
            raise ValueError(f"metric {self.name}.direction: must be max, min or None, got {self.direction!r}")
        if self.limit and self.direction is None:
            raise ValueError(f"metric {self.name}.limit: a limit needs a direction (max or min)")
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale > 0:
            raise ValueError(f"metric {self.name}.scale: must be a number > 0, got {self.scale!r}")
        try:  # a bad template fails here, at registration, not in a trial's progress line
            self.fmt.format(1.0)
        except (AttributeError, IndexError, KeyError, ValueError):
            raise ValueError(f"metric {self.name}.fmt: must format one number, like '{{:.4f}}', got "
                             f"{self.fmt!r}") from None
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def format(self, value: Any) -> str:
        """``value`` for people: scaled and formatted (``macs`` 1.27e6 → ``1.27M``); non-numbers as given."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return self.fmt.format(value / self.scale)

    @property
    def limit_key(self) -> str:
        """The ``select:``/``constraints:`` key: ``max_<name>`` for a "min" metric, ``min_<name>`` for a "max" one."""
        return f"{'max' if self.direction == 'min' else 'min'}_{self.name}"

    def within(self, value: float | None, bound: float) -> bool:
        """``value`` satisfies the limit ``bound`` (a missing value never does)."""
        if value is None:
            return False
        return value <= bound if self.direction == "min" else value >= bound


METRICS: dict[str, Metric] = {}
"""Name → :class:`Metric`, in registration order: the metrics a search can compute."""

_OWNER: dict[str, str] = {}
_ALTERNATIVES: dict[str, list[str]] = {}


def add_metrics(evaluator: str, metrics: Iterable[Metric]) -> None:
    """Enter ``metrics`` as computed by ``evaluator`` (called by ``register_evaluator`` for a buildable one).

    A metric already computed by another evaluator raises ``ValueError``: one evaluator per metric.
    Registering the same evaluator again replaces its metrics.
    """
    metrics = list(metrics)
    for m in metrics:
        if not isinstance(m, Metric):
            raise ValueError(f"metrics: evaluator {evaluator!r} must declare Metric records, got {m!r}")
        owner = _OWNER.get(m.name)
        if owner is not None and owner != evaluator:
            raise ValueError(f"metric {m.name!r}: already computed by evaluator {owner!r}; a metric has one "
                             f"evaluator (name it differently)")
    for name in [n for n, owner in _OWNER.items() if owner == evaluator]:
        del METRICS[name], _OWNER[name]
    for m in metrics:
        METRICS[m.name] = m
        _OWNER[m.name] = evaluator


def add_alternative(evaluator: str, metrics: Iterable[Metric]) -> None:
    """Enter ``evaluator`` as another way to compute ``metrics`` (a config chooses it per metric with
    ``metric_evaluators:``); the metrics themselves stay those of their default evaluator."""
    for m in metrics:
        if not isinstance(m, Metric):
            raise ValueError(f"metrics: evaluator {evaluator!r} must declare Metric records, got {m!r}")
        names = _ALTERNATIVES.setdefault(m.name, [])
        if evaluator not in names:
            names.append(evaluator)


def metric_alternatives(name: str) -> list[str]:
    """The evaluators a config may choose for metric ``name`` instead of its default one."""
    return list(_ALTERNATIVES.get(name, ()))


def get_metric(name: str) -> Metric:
    """The metric called ``name``; ``ValueError`` listing the valid names otherwise."""
    try:
        return METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown metric {name!r}; valid: {', '.join(METRICS)}") from None


def list_metrics() -> list[str]:
    """Every metric name, in table order."""
    return list(METRICS)


def objective_names() -> list[str]:
    """The metrics a search may optimise (those with a direction), in table order."""
    return [m.name for m in METRICS.values() if m.direction is not None]


def metric_evaluator(name: str) -> str:
    """Name of the evaluator that computes metric ``name`` in a search."""
    get_metric(name)
    return _OWNER[name]
