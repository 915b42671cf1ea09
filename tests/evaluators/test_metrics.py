"""The metric table: records are checked when declared, unknown names list the valid ones, a metric has one
evaluator, and limits and display follow each metric's direction and scale."""
from __future__ import annotations

import pytest

from evaluators import EVALUATORS, METRICS, Metric, get_metric, metric_evaluator, register_evaluator


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown metric 'speed'; valid: val_acc.*params, flops, macs.*latency_ms"):
        get_metric("speed")


@pytest.mark.parametrize("kwargs, field", [
    ({"name": "two words", "direction": "min"}, "metric.name"),
    ({"name": "x", "direction": "down"}, "metric x.direction"),
    ({"name": "x", "direction": None, "limit": True}, "metric x.limit"),
    ({"name": "x", "direction": "min", "scale": 0}, "metric x.scale"),
    ({"name": "x", "direction": "min", "fmt": "{:.2f} of {}"}, "metric x.fmt"),
])
def test_bad_metric_records_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}"):
        Metric(**kwargs)


def test_a_metric_has_one_evaluator():
    before = dict(METRICS)
    with pytest.raises(ValueError, match=r"metric 'macs': already computed by evaluator 'complexity'"):
        register_evaluator("macs_again", object, metrics=[Metric("macs", "min")], build=lambda ctx: None)
    assert METRICS == before and "macs_again" not in EVALUATORS and metric_evaluator("macs") == "complexity"


def test_the_builtin_evaluators_own_their_metrics():
    owners = {name: metric_evaluator(name) for name in METRICS}
    assert {k: owners[k] for k in ("val_acc", "params", "flops", "macs", "latency_ms")} == {
        "val_acc": "accuracy", "params": "complexity", "flops": "complexity", "macs": "complexity",
        "latency_ms": "latency"}
    assert get_metric("latency_ms").limit and not get_metric("latency_ms").cheap  # cheap only when predicted
    assert get_metric("macs").cheap and get_metric("val_acc").direction == "max"


def test_limits_and_display_follow_direction_and_scale():
    macs, acc = get_metric("macs"), get_metric("val_acc")
    assert macs.limit_key == "max_macs" and Metric("acc2", "max", limit=True).limit_key == "min_acc2"
    assert macs.within(1e6, 1e6) and not macs.within(1e6 + 1, 1e6) and not macs.within(None, 1e6)
    assert Metric("acc2", "max", limit=True).within(0.9, 0.8) and not Metric("acc2", "max").within(0.7, 0.8)
    assert macs.format(1_265_984.0) == f"{1_265_984 / 1e6:.2f}M" and acc.format(0.25) == "0.2500"
