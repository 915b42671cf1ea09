"""Every registered evaluator honours the contract (parametrised over the registry)."""
from __future__ import annotations

import math

import pytest

import space
from evaluators import EVALUATORS, Evaluator, create_evaluator, list_evaluators
from evaluators.nb201_table import Nb201TableMissing


def test_builtin_evaluators_registered():
    assert {"accuracy", "complexity", "latency"} <= set(list_evaluators())


@pytest.mark.parametrize("name", EVALUATORS.names())
def test_contract(name, one_thread):
    entry = EVALUATORS.entry(name)
    try:
        ev = create_evaluator(name, **entry.meta["example"]())
    except Nb201TableMissing as exc:
        pytest.skip(str(exc))
    assert isinstance(ev, Evaluator) and ev.name == entry.name and isinstance(ev.cheap, bool)
    calls: list[dict] = []
    arch = entry.meta["example_arch"]() if "example_arch" in entry.meta else space.wrn(10, 1, input_size=16)
    out = ev.evaluate(arch, 1, report=calls.append)
    assert out and all(isinstance(k, str) and isinstance(v, float) and math.isfinite(v) for k, v in out.items())
    assert all(isinstance(c, dict) for c in calls)
    declared = [m.name for m in entry.meta["metrics"]]
    assert declared and set(declared) <= set(out), (declared, sorted(out))  # it returns what it declares


def test_unknown_evaluator_lists_valid_names():
    with pytest.raises(ValueError, match="accuracy.*complexity.*latency"):
        create_evaluator("flops_and_more")
