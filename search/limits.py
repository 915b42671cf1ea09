"""The parts of the config made from the metric table (:mod:`evaluators.metrics`): the ``select:`` and
``constraints:`` sections, one optional bound per limit-able metric (``max_<name>`` for a minimised
metric, ``min_<name>`` for a maximised one; constraints only for metrics that may be cheap), and the
``plugins`` that add metrics from outside ``evaluators/``. The sections are made when this module is first
imported, from the metrics registered by then (every module of ``evaluators/``).
"""
from __future__ import annotations

import importlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from evaluators import METRICS, Metric, get_metric, may_be_cheap

TIE_BREAK = "macs"
"""The ``select`` rule's tie-break between equally accurate trials: fewer of this metric."""

_STRICT = ConfigDict(extra="forbid", frozen=True)


def _limit_fields(*, hard: bool) -> dict[str, Any]:
    """``max_<name>``/``min_<name>`` of every limit-able metric in the table (``hard``: those that may be cheap)."""
    return {m.limit_key: (float | None, Field(None, gt=0)) for m in METRICS.values()
            if m.limit and (not hard or may_be_cheap(m))}


SelectConfig = create_model(
    "SelectConfig", __config__=_STRICT, __module__=__name__, **_limit_fields(hard=False),
    __doc__=f"``best.yaml`` = highest ``val_acc`` among complete trials within every given budget; ties → fewer "
            f"{TIE_BREAK}. One key per limit-able metric of the table.")

ConstraintsConfig = create_model(
    "ConstraintsConfig", __config__=_STRICT, __module__=__name__, **_limit_fields(hard=True),
    __doc__="Hard limits checked with the cheap evaluators before any training, one key per limit-able metric "
            "that may be cheap (``max_latency_ms``: with the predicted latency, ``latency.mode: predict``).")


def given_limits(section: BaseModel) -> list[tuple[str, Metric, float]]:
    """``(key, metric, bound)`` of every limit set in a ``select:`` or ``constraints:`` section."""
    return [(key, get_metric(key.split("_", 1)[1]), float(bound)) for key, bound in section if bound is not None]


def import_plugins(names: list[str]) -> None:
    """Import the config's ``plugins`` (modules whose ``register_evaluator`` lines add metrics)."""
    for i, name in enumerate(names):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ValueError(f"item {i}: cannot import {name!r} ({type(exc).__name__}: {exc})") from None
